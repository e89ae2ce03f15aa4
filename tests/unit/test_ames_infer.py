"""AMES inference with per-image work hoisted (methods/ames/infer.py): the logits of the official masked computation, with
padding, empty images, one layer or five, pairs grouped and batched in any way; the bfloat16 path within 2%; the
precision chosen from the hardware."""

import numpy as np
import pytest
import torch

from retrieval.methods.ames import infer
from retrieval.methods.ames.infer import fast_dtype, prepare_side, resolve_precision, score_prepared
from retrieval.methods.ames.model import AMES, AmesConfig, reference_forward
from retrieval.methods.ames.rerank import compute_logits


def _pairs(cfg, b, n_q, n_t, seed=0):
    g = torch.Generator().manual_seed(seed)
    src, tgt = torch.randn(b, n_q, cfg.local_dim, generator=g), torch.randn(b, n_t, cfg.local_dim, generator=g)
    sm, tm = torch.zeros(b, n_q, dtype=torch.bool), torch.zeros(b, n_t, dtype=torch.bool)
    sm[1, 4:] = True
    tm[2, 3:] = True
    tm[3, :] = True  # a database image without descriptors
    sm[4, :] = True  # a query without descriptors
    return src, sm, tgt, tm


@pytest.mark.parametrize(
    "cfg",
    [
        AmesConfig(local_dim=24, model_dim=32, nhead=2, num_layers=5, dim_feedforward=64),
        AmesConfig(local_dim=24, model_dim=32, nhead=4, num_layers=1, dim_feedforward=64),
        AmesConfig(local_dim=24, model_dim=32, nhead=2, num_layers=2, dim_feedforward=64, binarized=True),
    ],
)
def test_prepared_scores_equal_the_official_masked_forward(cfg):
    torch.manual_seed(0)
    model = AMES(cfg).eval()
    for p in model.parameters():  # larger weights than the initialisation, so every block matters
        p.data += 0.2 * torch.randn_like(p)
    src, sm, tgt, tm = _pairs(cfg, 6, 9, 13)
    with torch.no_grad():
        ref = reference_forward(model, src, sm, tgt, tm)
        got = score_prepared(
            model, prepare_side(model, model.project(src), sm), prepare_side(model, model.project_db(tgt), tm)
        )
    assert float(ref.max() - ref.min()) > 0.1  # pairs score differently
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("amx", [False, True])
def test_bfloat16_path_within_two_percent(monkeypatch, amx):
    # both attention kernels of the bfloat16 path, whatever this CPU has: the matrix-product form (no AMX) and fused
    monkeypatch.setattr(infer, "_AMX", amx)
    torch.manual_seed(1)
    cfg = AmesConfig(local_dim=64, model_dim=128, nhead=2, num_layers=5, dim_feedforward=256)
    model = AMES(cfg).eval()
    for p in model.parameters():
        p.data += 0.05 * torch.randn_like(p)
    src, sm, tgt, tm = _pairs(cfg, 6, 78, 78)  # 79 keys a row: matmul_attention pads them to 80
    with torch.no_grad():
        ref = reference_forward(model, src, sm, tgt, tm)
        qs, ds = prepare_side(model, model.project(src), sm), prepare_side(model, model.project_db(tgt), tm)
        bf = score_prepared(model, qs, ds, torch.bfloat16)
    assert bf.dtype == torch.float32
    assert float((bf - ref).abs().max()) <= 0.02 * float(ref.abs().max())
    assert not torch.equal(bf, score_prepared(model, qs, ds))  # bfloat16 was really used


def test_matmul_attention_is_the_fused_kernels_function():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 2, n, 16, generator=g) * 2 for n in (7, 11, 11))
    keep = torch.ones(3, 1, 1, 11, dtype=torch.bool)
    keep[1, ..., 4:] = False  # padded keys of one pair
    keep[2, ..., :10] = False  # one key left
    for mask in (None, keep):
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(infer.matmul_attention(q, k, v, mask), want, atol=1e-6, rtol=1e-5)
        got = infer.matmul_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.02)
    # a one-key row is that key's value, exactly
    torch.testing.assert_close(infer.matmul_attention(q, k, v, keep)[2], v[2, :, 10:].expand(2, 7, 16))
    # 601 keys are padded to 608 inside (the padding masked out): the same function, with and without a mask
    k, v = (torch.randn(3, 2, 601, 16, generator=g) for _ in range(2))
    keep = torch.ones(3, 1, 1, 601, dtype=torch.bool)
    keep[1, ..., 300:] = False
    for mask in (None, keep):
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(infer.matmul_attention(q, k, v, mask), want, atol=1e-6, rtol=1e-5)


def test_attention_kernel_follows_dtype_device_and_amx(monkeypatch):
    bf, f32 = torch.zeros(1, 1, 2, 4, dtype=torch.bfloat16), torch.zeros(1, 1, 2, 4)
    monkeypatch.setattr(infer, "_AMX", False)
    assert infer.attention_kernel(bf) is infer.matmul_attention
    # the same choice by name, as the throughput benchmark reads it (no tensor needed; a GPU always fused)
    assert infer.auto_kernel("cpu", torch.bfloat16) == "matmul" and infer.auto_kernel("cpu", torch.float32) == "fused"
    assert infer.auto_kernel("cuda", torch.bfloat16) == "fused"
    assert infer.attention_kernel(f32) is torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(infer, "_AMX", True)  # AMX's tiles run the fused kernel's products (the 5x goal met there)
    assert infer.attention_kernel(bf) is torch.nn.functional.scaled_dot_product_attention
    assert infer.auto_kernel("cpu", torch.bfloat16) == "fused"
    # forced (the throughput benchmark times the kernel auto does not choose), whatever the dtype and CPU
    assert infer.attention_kernel(bf, "matmul") is infer.matmul_attention
    assert infer.attention_kernel(f32, "matmul") is infer.matmul_attention
    monkeypatch.setattr(infer, "_AMX", False)
    assert infer.attention_kernel(bf, "fused") is torch.nn.functional.scaled_dot_product_attention
    with pytest.raises(ValueError, match="attention kernel 'flash' is not one of auto, fused, matmul"):
        infer.attention_kernel(bf, "flash")


def test_score_prepared_with_each_kernel_forced():
    torch.manual_seed(2)
    cfg = AmesConfig(local_dim=24, model_dim=32, nhead=2, num_layers=3, dim_feedforward=64)
    model = AMES(cfg).eval()
    for p in model.parameters():
        p.data += 0.2 * torch.randn_like(p)
    src, sm, tgt, tm = _pairs(cfg, 5, 9, 13)
    with torch.no_grad():
        ref = reference_forward(model, src, sm, tgt, tm)
        qs, ds = prepare_side(model, model.project(src), sm), prepare_side(model, model.project_db(tgt), tm)
        for kernel in ("fused", "matmul"):  # float32: the same function to float rounding
            torch.testing.assert_close(score_prepared(model, qs, ds, kernel=kernel), ref, atol=1e-5, rtol=1e-5)
        bf = {k: score_prepared(model, qs, ds, torch.bfloat16, k) for k in ("fused", "matmul")}
        with pytest.raises(ValueError, match="'flash'"):
            score_prepared(model, qs, ds, kernel="flash")
    for out in bf.values():
        assert float((out - ref).abs().max()) <= 0.02 * float(ref.abs().max())
    assert not torch.equal(bf["fused"], bf["matmul"])  # the kernel really changed (other roundings)


def test_fast_dtype_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert fast_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert fast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert fast_dtype("cpu") == torch.float32


def test_precision_names_the_dtype_or_follows_the_hardware(monkeypatch):
    assert resolve_precision("float32", "cpu") == torch.float32
    assert resolve_precision("bfloat16", "cpu") == torch.bfloat16
    monkeypatch.setattr(infer, "fast_dtype", lambda device: torch.bfloat16)
    assert resolve_precision("auto", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="ames.precision: 'fp16'"):
        resolve_precision("fp16", "cpu")


def test_training_attention_in_bfloat16_runs_its_kernels_in_float32():
    """Under bfloat16 autocast with gradients on the CPU the block attention's kernels take float32 inputs (the
    CPU's bfloat16 flash-attention backward is the slow one); the gradients follow float32's."""
    torch.manual_seed(4)
    cfg = AmesConfig(local_dim=16, model_dim=32, nhead=2, num_layers=2, dim_feedforward=64)
    model = AMES(cfg).train()
    src, tgt = torch.randn(3, 7, 16), torch.randn(3, 9, 16)
    sm, tm = torch.arange(7)[None].expand(3, -1) >= 5, torch.arange(9)[None].expand(3, -1) >= 8
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None):
        seen.append(q.dtype)
        return sdpa(q, k, v, attn_mask=attn_mask)

    grads = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
                out = model(src, tgt, sm, tm)
        out.float().sum().backward()
        grads[dtype] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert seen and set(seen) == {torch.float32}
    rel = float((grads[torch.bfloat16] - grads[torch.float32]).norm() / grads[torch.float32].norm())
    assert 0 < rel < 0.05


@pytest.mark.parametrize("batch,db_block", [(1, 1), (3, 2), (64, 256)])
def test_compute_logits_equals_reference_per_pair(batch, db_block):
    torch.manual_seed(2)
    cfg = AmesConfig(local_dim=16, model_dim=32, nhead=2, num_layers=3, dim_feedforward=64)
    model = AMES(cfg).eval()
    rng = np.random.default_rng(0)
    qd, qc = rng.normal(size=(3, 8, 16)).astype(np.float32), np.array([8, 5, 0], np.int32)
    dd, dc = rng.normal(size=(9, 11, 16)).astype(np.float32), np.array([11, 4, 0, 11, 7, 2, 11, 1, 9], np.int32)
    pairs = [np.array([0, 2, 5, 8]), np.array([1, 2, 3]), np.array([4, 6, 7, 8])]
    got = compute_logits(
        model, qd, qc, lambda r: (dd[r], dc[r]), pairs, 6, 10, batch=batch, db_block=db_block, dtype=torch.float32
    )
    for i, p in enumerate(pairs):
        src = torch.from_numpy(qd[i : i + 1, :6]).expand(len(p), -1, -1)
        sm = (torch.arange(6) >= min(int(qc[i]), 6))[None].expand(len(p), -1)
        tgt = torch.from_numpy(dd[p, :10])
        tm = torch.arange(10)[None] >= torch.from_numpy(np.minimum(dc[p], 10))[:, None]
        with torch.no_grad():
            ref = reference_forward(model, src, sm, tgt, tm).numpy()
        np.testing.assert_allclose(got[i], ref, atol=1e-5)

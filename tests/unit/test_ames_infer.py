"""AMES inference with per-image work hoisted (methods/ames/infer.py): the logits of the official masked computation, with
padding, empty images, one layer or five, pairs grouped and batched in any way; the bfloat16 path within 2%; the
precision chosen from the hardware."""

import numpy as np
import pytest
import torch

from retrieval.methods.ames.infer import fast_dtype, prepare_side, score_prepared
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


def test_bfloat16_path_within_two_percent():
    torch.manual_seed(1)
    cfg = AmesConfig(local_dim=64, model_dim=128, nhead=2, num_layers=5, dim_feedforward=256)
    model = AMES(cfg).eval()
    for p in model.parameters():
        p.data += 0.05 * torch.randn_like(p)
    src, sm, tgt, tm = _pairs(cfg, 6, 40, 50)
    with torch.no_grad():
        ref = reference_forward(model, src, sm, tgt, tm)
        qs, ds = prepare_side(model, model.project(src), sm), prepare_side(model, model.project_db(tgt), tm)
        bf = score_prepared(model, qs, ds, torch.bfloat16)
    assert bf.dtype == torch.float32
    assert float((bf - ref).abs().max()) <= 0.02 * float(ref.abs().max())
    assert not torch.equal(bf, score_prepared(model, qs, ds))  # bfloat16 was really used


def test_fast_dtype_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert fast_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert fast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert fast_dtype("cpu") == torch.float32


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

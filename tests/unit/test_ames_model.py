"""AMES model: the fast block implementation against the official-style masked one, masks, asymmetric counts,
checkpoints (ours and the official layout), binarisation."""

import numpy as np
import pytest
import torch
from torch import nn

import retrieval.methods.ames.model as ames_model
from retrieval.methods.ames.model import AMES, AmesConfig, load_checkpoint, reference_forward, save_checkpoint

torch.manual_seed(0)
SMALL = AmesConfig(local_dim=32, model_dim=16, nhead=2, num_layers=2, dim_feedforward=32)


def batch(b, n_q, n_t, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    src, tgt = torch.randn(b, n_q, d, generator=g), torch.randn(b, n_t, d, generator=g)
    q_len = torch.randint(1, n_q + 1, (b,), generator=g)
    t_len = torch.randint(1, n_t + 1, (b,), generator=g)
    src_mask = torch.arange(n_q)[None] >= q_len[:, None]
    tgt_mask = torch.arange(n_t)[None] >= t_len[:, None]
    return src, src_mask, tgt, tgt_mask


@pytest.mark.parametrize("cfg", [SMALL, AmesConfig(local_dim=128)], ids=["small", "default-size"])
@pytest.mark.parametrize("n_q, n_t", [(7, 7), (12, 5), (3, 20)])
def test_fast_equals_reference(cfg, n_q, n_t):
    model = AMES(cfg).eval()
    src, sm, tgt, tm = batch(4, n_q, n_t, cfg.local_dim)
    with torch.no_grad():
        ref, ref_h = reference_forward(model, src, sm, tgt, tm, return_hidden=True)
        fast, fast_h = model(src, tgt, sm, tm, return_hidden=True)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_h, ref_h, atol=1e-5, rtol=1e-5)


def test_padded_descriptors_change_nothing():
    model = AMES(SMALL).eval()
    src, sm, tgt, tm = batch(3, 6, 8, SMALL.local_dim)
    src2, tgt2 = src.clone(), tgt.clone()
    src2[sm] = torch.randn(int(sm.sum()), SMALL.local_dim) * 10
    tgt2[tm] = torch.randn(int(tm.sum()), SMALL.local_dim) * 10
    with torch.no_grad():
        torch.testing.assert_close(model(src, tgt, sm, tm), model(src2, tgt2, sm, tm), atol=1e-6, rtol=0)
        # and padding is the same as truncating
        one = model(src[:1, : int((~sm[0]).sum())], tgt[:1, : int((~tm[0]).sum())])
        torch.testing.assert_close(one, model(src[:1], tgt[:1], sm[:1], tm[:1]), atol=1e-5, rtol=0)


def test_roles_are_symmetric_and_counts_matter():
    """AMES has no positional encoding and shares every weight between the two images, so swapping the query and
    the database image gives the same logit whatever their (asymmetric) counts; in inference the only asymmetry is
    the database side's float16 rounding (as stored). Fewer descriptors give another logit."""
    model = AMES(SMALL).train()  # train mode: no float16 rounding of the database tokens
    src, sm, tgt, tm = batch(3, 10, 3, SMALL.local_dim)
    with torch.no_grad():
        a, b = model(src, tgt, sm, tm), model(tgt, src, tm, sm)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        fewer = model(src[:, :2], tgt, torch.zeros_like(sm[:, :2]), tm)  # the first 2 query descriptors only
        full = model(src, tgt, torch.zeros_like(sm), tm)
        assert (fewer - full).abs().min() > 1e-4
        model.eval()
        a_e, b_e = model(src, tgt, sm, tm), model(tgt, src, tm, sm)
    rounding = (a_e - b_e).abs().max()
    assert 0 < rounding < 1e-3 and (a_e - a).abs().max() < 1e-3


def test_database_tokens_are_rounded_through_float16_in_fp_inference():
    model = AMES(SMALL).eval()
    x = torch.randn(1, 5, SMALL.local_dim)
    t = model.project_db(x)
    assert torch.equal(t, t.half().float())
    model.train()
    assert not torch.equal(model.project_db(x), model.project_db(x).half().float())


def test_binary_sign_maps_zero_to_plus_one_and_train_relaxation():
    model = AMES(AmesConfig(**{**SMALL.to_dict(), "binarized": True})).eval()
    layer = model.remap_local[0]
    with torch.no_grad():
        layer.W.zero_()  # every projection is exactly 0 -> +1
    out = layer(torch.randn(2, 3, SMALL.local_dim))
    assert torch.equal(out, torch.ones_like(out))
    layer.train()
    with torch.no_grad():
        layer.W.normal_()
    z = layer(torch.randn(2, 3, SMALL.local_dim))
    assert z.abs().max() <= 1 and z.requires_grad


def test_checkpoint_round_trip(tmp_path):
    for cfg in (SMALL, AmesConfig(**{**SMALL.to_dict(), "binarized": True})):
        model = AMES(cfg).eval()
        save_checkpoint(str(tmp_path / "m.pt"), model, {"trained_on": "demo-train"})
        loaded, meta = load_checkpoint(str(tmp_path / "m.pt"))
        assert meta["config"] == cfg.to_dict() and meta["provenance"]["trained_on"] == "demo-train"
        src, sm, tgt, tm = batch(2, 4, 5, cfg.local_dim)
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(src, tgt, sm, tm), model(src, tgt, sm, tm))


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    """torch's own errors name neither the file nor the cause (KeyError: 101 for a text file, an enforce failure of
    its zip reader for an .npz): a ValueError says the file is not an AMES checkpoint."""
    (tmp_path / "notes.pt").write_text("not a model\n")
    np.savez(tmp_path / "arrays.npz", mean=np.zeros(3))
    (tmp_path / "arrays.npz").rename(tmp_path / "arrays.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "dict.pt")
    # a state dict of something else: a bare KeyError 'mtc_token' (a new user's trial)
    torch.save({"state": {"foo": torch.zeros(2)}, "config": {}}, tmp_path / "other.pt")
    torch.save({"state": torch.zeros(2)}, tmp_path / "tensor_state.pt")
    # a checkpoint cut short (an interrupted copy): torch said "OSError: [Errno 22] Invalid argument"
    save_checkpoint(str(tmp_path / "whole.pt"), AMES(SMALL), {})
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:20_000])
    for name, why in (("notes.pt", "torch.load could not read it"), ("arrays.pt", "torch.load could not read it"),
                      ("dict.pt", "expected a dict with key 'state'"), ("other.pt", "no 'mtc_token'.*'foo'"),
                      ("tensor_state.pt", "'state' is a Tensor"),
                      ("cut.pt", "a torch archive cut short or damaged, 20000 bytes .*: copy the file again")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"{name}: not an AMES checkpoint \(.*{why}"):
            load_checkpoint(str(tmp_path / name))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "absent.pt"))


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    # a checkpoint's sha1 goes into the manifests: saving the same model twice (each through its own temporary
    # file) must give the same file
    model = AMES(SMALL)
    save_checkpoint(str(tmp_path / "a.pt"), model, {"trained_on": "demo-train"})
    save_checkpoint(str(tmp_path / "b.pt"), model, {"trained_on": "demo-train"})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


class OfficialLayout(nn.Module):
    """The official module tree (names and shapes as in pavelsuma/ames), written independently of ours."""

    def __init__(self, local_dim, d=128, layers=5, ff=1024, binarized=False):
        super().__init__()
        self.mtc_token = nn.Parameter(torch.randn(d) * 0.02)
        if binarized:
            bin_layer = nn.Module()
            bin_layer.W = nn.Parameter(torch.randn(local_dim, d))
            self.remap_local = nn.Sequential(bin_layer, nn.Linear(d, d), nn.LayerNorm(d))
        else:
            self.remap_local = nn.Sequential(nn.Linear(local_dim, d), nn.LayerNorm(d))
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList()
        for _ in range(layers):
            layer = nn.Module()
            layer.self_attn = nn.MultiheadAttention(d, 2, batch_first=True)
            layer.cross_attn = nn.MultiheadAttention(d, 2, batch_first=True)
            layer.linear1, layer.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
            layer.norm1, layer.norm2, layer.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
            self.decoder.layers.append(layer)
        self.classifier = nn.Linear(d, 1)


@pytest.mark.parametrize("binarized", [False, True])
def test_official_layout_state_dict_loads(tmp_path, binarized):
    official = OfficialLayout(local_dim=768, binarized=binarized)
    names = set(official.state_dict())
    assert "decoder.layers.4.cross_attn.in_proj_weight" in names and "classifier.weight" in names
    torch.save({"state": official.state_dict(), "optim": {}, "epoch": 15}, tmp_path / "dinov2_ames.pt")
    model, _ = load_checkpoint(str(tmp_path / "dinov2_ames.pt"))
    assert model.cfg == AmesConfig(local_dim=768, binarized=binarized)
    ours = model.state_dict()
    for k, v in official.state_dict().items():
        assert torch.equal(ours[k], v), k


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batches_without_padding_skip_the_masks_with_the_same_result(monkeypatch, dtype):
    # a training step on a batch with no padding runs the attention without masks; its logits and gradients must be
    # those of the masked computation (all-True masks) to the bit, on the CPU, in float32 and bfloat16 autocast
    seen = []
    sdpa = ames_model.F.scaled_dot_product_attention
    monkeypatch.setattr(
        ames_model.F, "scaled_dot_product_attention", lambda *a, **kw: seen.append(kw["attn_mask"]) or sdpa(*a, **kw)
    )

    def step(force_masks):
        torch.manual_seed(0)
        model = AMES(AmesConfig(local_dim=32, model_dim=16, nhead=2, num_layers=2, dim_feedforward=32)).train()
        g = torch.Generator().manual_seed(1)
        src, tgt = torch.randn(3, 40, 32, generator=g), torch.randn(3, 70, 32, generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            q_tok, d_tok = model.project(src), model.project_db(tgt)
            if force_masks:  # the decoder on all-True key masks, as before nothing-padded was detected
                x = torch.cat([model.mtc_token.expand(3, 1, -1), q_tok, d_tok], 1)
                keep_q, keep_d = torch.ones(3, 40, dtype=torch.bool), torch.ones(3, 70, dtype=torch.bool)
                logits = model.classifier(model.decoder(x, 40, keep_q, keep_d)[:, 0]).view(-1)
            else:
                logits = model.score_tokens(q_tok, torch.zeros(3, 40), d_tok, torch.zeros(3, 70))
        logits.float().sum().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    fast, fast_grads = step(False)
    assert len(seen) == 2 * 2 * 3 and all(m is None for m in seen)  # layers x blocks x (mtc, query, db rows)
    seen.clear()
    masked, masked_grads = step(True)
    assert len(seen) == 12 and all(m is not None and bool(m.all()) for m in seen)
    assert torch.equal(fast, masked)
    assert all(torch.equal(a, b) for a, b in zip(fast_grads, masked_grads))


def test_one_padded_descriptor_keeps_the_masks():
    # padding anywhere in the batch: masks for every block, and the padded key is masked out (its value ignored)
    model = AMES(SMALL).eval()
    src, tgt = torch.randn(2, 5, 32), torch.randn(2, 6, 32)
    pad_q, pad_t = torch.zeros(2, 5, dtype=torch.bool), torch.zeros(2, 6, dtype=torch.bool)
    pad_t[1, 5] = True
    with torch.no_grad():
        ref = reference_forward(model, src, pad_q, tgt, pad_t)
        out = model(src, tgt, pad_q, pad_t)
        tgt2 = tgt.clone()
        tgt2[1, 5] = 100.0
        moved = model(src, tgt2, pad_q, pad_t)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out, moved)


def _graph_nodes(t):
    seen, stack, names = set(), [t.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(f for f, _ in node.next_functions)
    return names


def test_training_graph_has_no_full_size_clear_and_copy(monkeypatch):
    # a training forward must not put an in-place op on a view (autograd then clears and copies the whole
    # (B, L, dim_feedforward) tensor in backward: CopySlices) nor select q, k, v one by one (three full-size zero
    # gradients); its gradients are those of the previous formulas (in-place ReLU, three selects), to the bit
    def step():
        torch.manual_seed(0)
        model = AMES(SMALL).train()
        src, sm, tgt, tm = batch(3, 9, 11, SMALL.local_dim, seed=2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, hidden = model(src, tgt, sm, tm, return_hidden=True)
        nodes = _graph_nodes(logits)
        (logits.float().sum() + hidden.float().square().mean()).backward()
        return nodes, [p.grad.clone() for p in model.parameters()]

    nodes, grads = step()
    assert "CopySlices" not in nodes
    assert nodes.count("UnbindBackward0") == 2 * SMALL.num_layers  # one per attention block
    # the previous formulas: in-place ReLU, and q, k, v as qkv[0], qkv[1], qkv[2]
    monkeypatch.setattr(
        ames_model.DecoderLayer,
        "feed_forward",
        lambda self, x: self.linear2(ames_model.F.relu(self.linear1(x), inplace=True)),
    )
    unbind = torch.Tensor.unbind
    monkeypatch.setattr(
        torch.Tensor,
        "unbind",
        lambda self, dim=0: tuple(self[i] for i in range(len(self))) if dim == 0 else unbind(self, dim),
    )
    previous, previous_grads = step()
    # torch returns linear's 3-D output as a view, so the in-place formula does make a CopySlices (the check above
    # would see a revert), and the selects leave no UnbindBackward0
    assert "CopySlices" in previous and previous.count("UnbindBackward0") == 0
    assert all(torch.equal(a, b) for a, b in zip(grads, previous_grads))


def test_inference_keeps_the_in_place_relu(monkeypatch):
    # without autograd (re-ranking, validation) the ReLU stays in place: no second (B, L, dim_feedforward) buffer
    flags = []
    relu = ames_model.F.relu
    monkeypatch.setattr(
        ames_model.F, "relu", lambda x, inplace=False: flags.append(inplace) or relu(x, inplace=inplace)
    )
    model = AMES(SMALL).eval()
    src, sm, tgt, tm = batch(2, 5, 6, SMALL.local_dim)
    with torch.no_grad():
        model(src, tgt, sm, tm)
    assert flags == [True] * SMALL.num_layers
    flags.clear()
    model.train()(src, tgt, sm, tm)
    assert flags == [False] * SMALL.num_layers

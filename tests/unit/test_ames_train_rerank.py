"""AMES training pieces (pair sampling, ITQ, distillation, determinism) and re-ranking (fusion, junk mode, cache)."""

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch

from retrieval.evaluation.metrics import bootstrap_difference
from retrieval.methods.ames.model import AMES, AmesConfig
from retrieval.methods.ames.rerank import (
    GridSweep,
    compute_logits,
    evaluate_protocol_rankings,
    fused_score,
    fusion_logits,
    geometric_evidence,
    grid_rankings,
    lookup_inliers,
    lookup_logits,
    needed_pairs,
    protocol_shortlists,
    rerank,
)
from retrieval.methods.ames.train import (
    TrainConfig,
    _gather,
    fit_itq,
    mimetic_init_,
    sample_triplets,
    train_ames,
    valid_anchors,
)
from retrieval.search.exact import locate, similarity_along, topk_neighbours
from retrieval.stages.ames_evaluate import read_sv_inliers


def toy_neighbours():
    labels = np.array([0, 0, 0, 1, 1, 1, -1, -1])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)) + np.eye(8, 4)[labels.clip(0)] * 2
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    ids = np.argsort(-sims, axis=1)[:, :7]
    return labels, ids, np.take_along_axis(sims, ids, 1)


def test_valid_anchors_and_triplets():
    labels, ids, sims = toy_neighbours()
    sims = np.abs(sims)  # all similarities positive
    anchors = valid_anchors(ids, sims, labels, 7, min_pos=2, min_neg=2)
    assert set(anchors) == {0, 1, 2, 3, 4, 5}  # distractors (label -1) are never anchors
    assert len(valid_anchors(ids, sims, labels, 7, min_pos=3, min_neg=2)) == 0  # only 2 same-label neighbours exist
    t = sample_triplets(anchors, ids, sims, labels, 7, np.random.default_rng(0))
    assert sorted(t[:, 0]) == sorted(anchors)
    assert (labels[t[:, 1]] == labels[t[:, 0]]).all() and (labels[t[:, 2]] != labels[t[:, 0]]).all()


def test_sampling_ignores_non_positive_similarities_and_favours_high_ones():
    labels = np.array([0, 0, 0, 1, 1])
    ids = np.array([[1, 2, 3, 4]] + [[0, 2, 3, 4]] * 4)
    sims = np.array([[0.9, 0.3, 0.8, -0.5]] + [[0.5, 0.5, 0.5, 0.5]] * 4)
    draws = np.concatenate(
        [sample_triplets(np.array([0]), ids, sims, labels, 4, np.random.default_rng(s)) for s in range(300)]
    )
    assert (draws[:, 2] == 3).all()  # 4 has negative similarity: never drawn
    frac = (draws[:, 1] == 1).mean()
    assert frac == pytest.approx(0.9**3 / (0.9**3 + 0.3**3), abs=0.05)


def test_itq_codes_reduce_quantisation_error_and_centre():
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(2000, 32))) + 1.0  # non-negative like RootSIFT: far from centred
    itq = fit_itq(x, bits=16, n_iter=30)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = (xn - itq["mean"]) @ itq["W"]
    bits = np.where(v >= 0, 1, -1)
    assert 0.2 < (bits > 0).mean() < 0.8  # centring keeps bits balanced
    assert np.abs((bits > 0).mean(0) - 0.5).max() < 0.3
    np.testing.assert_allclose(itq["W"].T @ itq["W"], np.eye(16), atol=1e-4)  # orthonormal columns
    pca_only = fit_itq(x, bits=16, n_iter=0)

    def err(w):
        return np.linalg.norm(np.where((xn - w["mean"]) @ w["W"] >= 0, 1, -1) - (xn - w["mean"]) @ w["W"])

    assert err(itq) < err(pca_only)


def tiny_training_data(n_inst=6, per=5, k=12, d=16, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(n_inst, k, d))
    desc, labels = [], []
    for i in range(n_inst):
        for _ in range(per):
            desc.append(protos[i][rng.permutation(k)] + 0.3 * rng.normal(size=(k, d)))
            labels.append(i)
    desc = np.stack(desc).astype(np.float16)
    labels = np.array(labels)
    g = desc.astype(np.float32).mean(1)
    g /= np.linalg.norm(g, axis=1, keepdims=True)

    ids, sims = topk_neighbours(g, g, 20, exclude_self=True)
    return desc, np.full(len(desc), k, np.int32), labels, ids, np.abs(sims)


CFG = AmesConfig(local_dim=16, model_dim=16, nhead=2, num_layers=2, dim_feedforward=32)
TCFG = TrainConfig(
    epochs=3,
    batch_size=24,
    lr=1e-3,
    q_desc=12,
    db_desc=12,
    min_desc=4,
    num_candidates=20,
    min_pos=2,
    min_neg=2,
    warmup_epochs=0.5,
)


def test_a_batch_of_no_whole_triplets_and_a_warmup_as_long_as_training_are_warned_of(caplog):
    """batch_size 5 trained 1 triplet a step, and warmup_epochs 10 with 2 epochs never reached the learning rate,
    both without a word (helper-140)."""
    data = tiny_training_data()
    train_ames(*data, CFG, dataclasses.replace(TCFG, epochs=1, batch_size=5, warmup_epochs=2))
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("ames.train.batch_size 5 is not a multiple of 3 (a triplet's images): 1 triplet(s) per step, the "
               "batch's other 2 image(s) unused" in m for m in said)  # fmt: skip
    assert any("ames.train.warmup_epochs 2 is not below epochs 1: " in m and "reaches 0.5 of ames.train.lr" in m
               for m in said)  # fmt: skip
    caplog.clear()
    train_ames(*data, CFG, dataclasses.replace(TCFG, epochs=1))  # 24 images, warmup 0.5: nothing to say
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_training_is_deterministic_and_learns():
    data = tiny_training_data()
    m1, c1 = train_ames(*data, CFG, TCFG)
    m2, c2 = train_ames(*data, CFG, TCFG)
    assert c1[-1]["loss"] == c2[-1]["loss"]
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert c1[-1]["loss"] < c1[0]["loss"]


def test_gradient_clipping_is_applied_and_its_norms_are_recorded():
    data = tiny_training_data()
    free_model, free = train_ames(*data, CFG, TCFG)
    clipped_model, clipped = train_ames(*data, CFG, dataclasses.replace(TCFG, grad_clip=1e-6))
    assert all(c["grad_norm_max"] >= c["grad_norm_median"] > 0 for c in free + clipped)
    # a gradient clipped far below AdamW's epsilon gives other steps: the clip was applied
    moved = [float((a - b).detach().abs().max()) for a, b in zip(free_model.parameters(), clipped_model.parameters())]
    assert max(moved) > 1e-3
    with pytest.raises(ValueError, match="ames.train.grad_clip"):
        TrainConfig(grad_clip=-1.0)


def test_mixed_precision_training_follows_float32_training():
    """bfloat16 autocast (the matrix products; the attention kernels and the optimiser in float32) learns the same
    task: the same first-epoch loss to 2% and a falling loss; the weights stay float32."""
    data = tiny_training_data()
    _, c32 = train_ames(*data, CFG, TCFG)
    m16, c16 = train_ames(*data, CFG, TCFG, dtype=torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    assert abs(c16[0]["loss"] - c32[0]["loss"]) <= 0.02 * c32[0]["loss"]
    assert c16[0]["loss"] != c32[0]["loss"]  # bfloat16 was really used
    assert c16[-1]["loss"] < c16[0]["loss"]


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    data = tiny_training_data()
    cfg = TrainConfig(**{**TCFG.to_dict(), "epochs": 8, "patience": 2})
    scores = iter([0.1, 0.5, 0.4, 0.45, 0.9, 0.2])  # best at epoch 2; epochs 3, 4 are worse: stop after epoch 4
    seen = []

    def validate(model):
        assert not model.training  # scored as at re-ranking (float16-rounded database tokens)
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    model, curves = train_ames(*data, CFG, cfg, validate=validate)
    assert [c["epoch"] for c in curves] == [1, 2, 3, 4]
    assert [c["validation"] for c in curves] == [0.1, 0.5, 0.4, 0.45]
    assert [c["kept"] for c in curves] == [False, True, False, False]
    for k, v in model.state_dict().items():  # the weights of epoch 2, not of the last epoch
        assert torch.equal(v, seen[1][k]), k
    assert any(not torch.equal(seen[1][k], seen[3][k]) for k in seen[1])
    # the learning-rate schedule is the one of all 8 epochs (stopping early does not compress it)
    full, curves_full = train_ames(*data, CFG, TrainConfig(**{**TCFG.to_dict(), "epochs": 8}))
    assert curves_full[1]["lr"] == curves[1]["lr"] and "validation" not in curves_full[0]
    # without patience the validation function is never called
    _, c0 = train_ames(*data, CFG, TCFG, validate=lambda m: pytest.fail("validated without patience"))
    assert len(c0) == TCFG.epochs
    # min_delta: an improvement smaller than it does not count
    scores2 = iter([0.5, 0.52, 0.53])
    _, c2 = train_ames(
        *data, CFG, TrainConfig(**{**cfg.to_dict(), "min_delta": 0.05}), validate=lambda m: next(scores2)
    )
    assert len(c2) == 3 and [c["kept"] for c in c2] == [True, False, False]
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=-1)


def test_mimetic_init_sets_the_attention_products():
    torch.manual_seed(0)
    model = AMES(CFG)
    mimetic_init_(model, qk=(0.0, 1.5), vo=(0.0, 0.5))  # alpha 0: the products are exactly beta-scaled identities
    c, dh = CFG.model_dim, CFG.model_dim // CFG.nhead
    for layer in model.decoder.layers:
        for attn in (layer.self_attn, layer.cross_attn):
            w = attn.in_proj_weight.detach()
            for h in range(CFG.nhead):
                qk = w[h * dh : (h + 1) * dh].T @ w[c + h * dh : c + (h + 1) * dh]  # Wq_h^T Wk_h (C x C)
                torch.testing.assert_close(qk, qk.T, atol=1e-5, rtol=0)  # symmetric, eigenvalues 1.5 (dh times) and 0
                ev = torch.linalg.eigvalsh(qk)
                torch.testing.assert_close(ev[-dh:], torch.full((dh,), 1.5), atol=1e-4, rtol=0)
                torch.testing.assert_close(ev[:-dh], torch.zeros(c - dh), atol=1e-4, rtol=0)
            torch.testing.assert_close(
                attn.out_proj.weight.detach() @ w[2 * c :], -0.5 * torch.eye(c), atol=1e-5, rtol=0
            )
    torch.manual_seed(0)
    a = AMES(CFG)
    mimetic_init_(a)
    torch.manual_seed(0)
    b = AMES(CFG)
    mimetic_init_(b)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="ames.train.init"):
        TrainConfig(init="xavier")
    with pytest.raises(ValueError, match="mimetic_qk"):
        TrainConfig(mimetic_qk=(0.7,))
    # not numbers, not a pair, not finite: each named by its key (a review: float() raised without it)
    for bad in (("a", 1), 0.5, (0.7, float("nan")), "12", {"a": 1, "b": 2}):
        with pytest.raises(ValueError, match=r"ames.train.mimetic_vo: expected \[alpha, beta\], two numbers"):
            TrainConfig(mimetic_vo=bad)
    assert TrainConfig(mimetic_vo=[0.3, "0.2"]).mimetic_vo == (0.3, 0.2)


def test_mimetic_init_learns_to_match_where_the_default_does_not():
    # positives share (noisy copies of) their instance's descriptors: a pure matching task. In the same 320 steps the
    # mimetic start fits it (this is what the demo's re-ranker needed); torch's default start barely moves
    data = tiny_training_data(n_inst=40, per=4)
    cfg = TrainConfig(**{**TCFG.to_dict(), "epochs": 16})
    _, default = train_ames(*data, CFG, cfg)
    _, mimetic = train_ames(*data, CFG, TrainConfig(**{**cfg.to_dict(), "init": "mimetic"}))
    assert mimetic[-1]["pair_accuracy"] > 0.8 and mimetic[-1]["loss"] < 0.45
    assert mimetic[-1]["loss"] < default[-1]["loss"] - 0.15


def test_distillation_uses_the_teacher():
    data = tiny_training_data()
    teacher, _ = train_ames(*data, CFG, TCFG)
    itq = fit_itq(data[0].reshape(-1, 16).astype(np.float32), bits=16, n_iter=5)
    bcfg = AmesConfig(**{**CFG.to_dict(), "binarized": True})
    student, curves = train_ames(*data, bcfg, TCFG, teacher=teacher, init_itq=itq)
    assert all(c["distill_mse"] > 0 for c in curves)
    no_teacher = TrainConfig(**{**TCFG.to_dict(), "beta": 0.0})
    _, curves0 = train_ames(*data, bcfg, no_teacher, teacher=teacher, init_itq=itq)
    assert curves0[0]["loss"] < curves[0]["loss"]  # beta x MSE is part of the loss


def test_training_and_distillation_take_stores_with_fewer_descriptors_than_drawn():
    # extraction kept 12 descriptors per image; the schedule draws up to 40 (as at re-ranking, capped by the store)
    data = tiny_training_data()
    long = TrainConfig(**{**TCFG.to_dict(), "q_desc": 40, "db_desc": 40, "min_desc": 20, "epochs": 1})
    teacher, curves = train_ames(*data, CFG, long)
    assert np.isfinite(curves[0]["loss"])
    itq = fit_itq(data[0].reshape(-1, 16).astype(np.float32), bits=16, n_iter=5)
    bcfg = AmesConfig(**{**CFG.to_dict(), "binarized": True})
    _, distilled = train_ames(*data, bcfg, long, teacher=teacher, init_itq=itq)
    assert distilled[0]["distill_mse"] > 0


def test_gathered_masks_mark_exactly_the_descriptors_beyond_each_count():
    """Where the store holds the drawn length (the default configuration) the batch and its mask are the ones built
    from the drawn length before the cap (``arange(length) >= count``), so the cap changes no trained model there."""
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(6, 12, 4)).astype(np.float16)
    counts = np.array([12, 0, 5, 9, 12, 1])
    rows = np.array([3, 1, 0, 5, 3])
    for length in (4, 9, 12):  # the store holds at least the drawn length
        x, mask = _gather(desc, counts, rows, length)
        np.testing.assert_array_equal(x.numpy(), desc[rows, :length].astype(np.float32))
        np.testing.assert_array_equal(mask.numpy(), np.arange(length)[None, :] >= counts[rows][:, None])
    x, mask = _gather(desc, counts, rows, 40)  # more drawn than held: capped at the 12 held
    assert x.shape == (5, 12, 4) and mask.shape == (5, 12)
    np.testing.assert_array_equal((~mask).sum(1).numpy(), counts[rows])


@pytest.mark.parametrize("key", ["q_desc", "db_desc"])
def test_descriptor_counts_must_leave_room_to_draw(key):
    with pytest.raises(ValueError, match=f"ames.train.{key}: expected more than ames.train.min_desc"):
        TrainConfig(**{**TCFG.to_dict(), key: TCFG.min_desc})


def test_fusion_hand_example():
    shortlist = np.array([[5, 3, 9, 1]])
    g = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    logits = np.array([[-5.0, 5.0, 0.0, 9.0]], np.float32)
    # lambda 1: global order kept
    np.testing.assert_array_equal(rerank(shortlist, g, logits, 1.0, 1.0, 4), shortlist)
    # lambda 0, top 3 only: sorted by logit within the first 3, the 4th stays last
    np.testing.assert_array_equal(rerank(shortlist, g, logits, 0.0, 1.0, 3), [[3, 9, 5, 1]])
    # lambda 0.5, gamma 1: s = 0.45+0.5*sig(-5)=0.453, 0.4+0.5*sig(5)=0.897, 0.35+0.25=0.6, 0.3+0.5*sig(9)=0.8
    np.testing.assert_array_equal(rerank(shortlist, g, logits, 0.5, 1.0, 4), [[3, 1, 9, 5]])


def test_promote_fusion_lifts_matches_and_keeps_the_global_order_of_the_rest():
    shortlist = np.array([[5, 3, 9, 1, 7]])
    g = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32)
    logits = [np.array([-6.0, -0.5, 2.0, -1.0, 0.5], np.float32)]
    clipped = fusion_logits(logits, "promote")
    np.testing.assert_array_equal(clipped[0], [0.0, 0.0, 2.0, 0.0, 0.5])
    np.testing.assert_array_equal(logits[0], [-6.0, -0.5, 2.0, -1.0, 0.5])  # the cached logits are not modified
    assert fusion_logits(logits, "sigmoid")[0] is logits[0]
    # promote, lambda 0: the images with a positive logit first (by logit), then the others in their global order
    for gamma in (0.1, 2.0):
        np.testing.assert_array_equal(rerank(shortlist, g, clipped[0][None], 0.0, gamma, 5), [[9, 7, 5, 3, 1]])
    # promote, lambda 0.5: 0.45+0.25, 0.4+0.25, 0.35+0.5*sig(2)=0.790, 0.3+0.25, 0.25+0.5*sig(0.5)=0.561
    np.testing.assert_array_equal(rerank(shortlist, g, clipped[0][None], 0.5, 1.0, 5), [[9, 5, 3, 7, 1]])
    # AMES's rule demotes the confident non-match (5, logit -6) below every other image at lambda 0
    np.testing.assert_array_equal(rerank(shortlist, g, logits[0][None], 0.0, 1.0, 5), [[9, 7, 3, 1, 5]])
    # the grid sweep reads the same clipped logits: a query whose positive (5) has a negative logit keeps AP 1
    gnd = [{"easy": [5], "hard": [], "junk": []}]
    pairs = [np.sort(shortlist[0])]
    order = np.argsort(shortlist[0])
    sw = GridSweep({p: shortlist for p in "EMH"}, {p: g for p in "EMH"}, pairs, [clipped[0][order]], gnd, 10, [5])
    assert sw.mean_ap(0.9, 1.0, 5)["E"] == pytest.approx(100.0)
    sw = GridSweep({p: shortlist for p in "EMH"}, {p: g for p in "EMH"}, pairs, [clipped[0][order]], gnd, 10, [5])
    assert sw.mean_ap(0.0, 1.0, 5)["E"] == pytest.approx(100.0 / 6, abs=1e-4)  # lifted 9 and 7 first: (0 + 1/3) / 2
    with pytest.raises(ValueError, match="ames.fusion"):
        fusion_logits(logits, "max")


def test_ames_junk_mode_moves_ignored_images_last():
    ids = np.array([[4, 2, 0, 3, 1]])
    gnd = [{"easy": [0], "hard": [3], "junk": [2]}]
    sl = protocol_shortlists(ids, gnd, "ames")
    np.testing.assert_array_equal(sl["M"], [[4, 0, 3, 1, 2]])
    np.testing.assert_array_equal(sl["H"], [[4, 3, 1, 2, 0]])
    np.testing.assert_array_equal(sl["E"], [[4, 0, 1, 2, 3]])
    assert protocol_shortlists(ids, gnd, "none")["H"] is ids
    pairs = needed_pairs(sl, 2)
    assert list(pairs[0]) == [0, 3, 4]  # union of every protocol's top 2


def test_logit_cache_matches_direct_scoring():
    model = AMES(CFG).eval()
    rng = np.random.default_rng(0)
    qd, dd = rng.normal(size=(2, 12, 16)).astype(np.float16), rng.normal(size=(6, 12, 16)).astype(np.float16)
    qc, dc = np.array([12, 7], np.int32), np.array([12, 3, 12, 9, 12, 12], np.int32)
    pairs = [np.array([0, 2, 5]), np.array([1, 3])]
    # float32 named: the default follows the hardware (bfloat16 on AVX-512 BF16 / AMX CPUs)
    logits = compute_logits(model, qd, qc, lambda r: (dd[r], dc[r]), pairs, 10, 10, batch=2, dtype=torch.float32)
    with torch.no_grad():
        for i, p in enumerate(pairs):
            for j, logit in zip(p, logits[i]):
                q = torch.from_numpy(qd[i : i + 1, : min(qc[i], 10)].astype(np.float32))
                d = torch.from_numpy(dd[j : j + 1, : min(dc[j], 10)].astype(np.float32))
                assert float(model(q, d)) == pytest.approx(float(logit), abs=1e-5)
    got = lookup_logits(pairs, logits, np.array([[5, 0, 2], [3, 1, 0]]), 2)
    assert got[0, 0] == logits[0][2] and got[1, 1] == logits[1][0]
    with pytest.raises(KeyError):
        lookup_logits(pairs, logits, np.array([[5, 0, 2], [3, 1, 0]]), 3)


def test_num_rerank_larger_than_the_database_is_clamped():
    shortlist = np.array([[2, 0, 1]])
    pairs, logits = [np.array([0, 1, 2])], [np.array([0.0, 3.0, -1.0], np.float32)]
    got = lookup_logits(pairs, logits, shortlist, 100)
    np.testing.assert_array_equal(got, [[-1.0, 0.0, 3.0]])
    g = np.array([[0.9, 0.8, 0.7]], np.float32)
    np.testing.assert_array_equal(rerank(shortlist, g, got, 0.0, 1.0, 100), [[1, 0, 2]])


def test_bootstrap_difference():
    a = [0.5, 0.5, None, 0.2, 0.4]
    b = [0.6, 0.7, 0.9, 0.2, 0.5]
    out = bootstrap_difference(a, b, n=2000)
    assert out["n_queries"] == 4 and out["mean"] == pytest.approx(10.0)
    assert out["improved"] == 3 and out["worse"] == 0
    assert out["n_bootstrap"] == 2000  # the interval's resamples (evaluate.bootstrap), recorded with it
    assert bootstrap_difference([None], [0.5], n=300) == {
        "mean": None,
        "ci95": None,
        "n_queries": 0,
        "n_bootstrap": 300,
    }
    # the interval is the bootstrap of the mean: inside the observed differences, narrower than their range
    assert 0.0 <= out["ci95"][0] < 10.0 < out["ci95"][1] <= 20.0
    # identical differences: no uncertainty at all
    const = bootstrap_difference([0.1] * 30, [0.3] * 30, n=500)
    assert const["ci95"] == pytest.approx([20.0, 20.0]) and const["mean"] == pytest.approx(20.0)
    # many queries: the percentile interval matches the normal one, mean +- 1.96 sd / sqrt(n), within 10%
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.8, 400)
    d = rng.normal(0.02, 0.1, 400)
    big = bootstrap_difference(base.tolist(), (base + d).tolist(), n=4000)
    half_width = (big["ci95"][1] - big["ci95"][0]) / 2
    assert half_width == pytest.approx(1.96 * 100 * d.std() / np.sqrt(400), rel=0.1)
    assert big["ci95"][0] < big["mean"] < big["ci95"][1]
    # the same seed gives the same interval; a quarter of the queries, a wider one
    assert bootstrap_difference(base.tolist(), (base + d).tolist(), n=4000) == big
    small = bootstrap_difference(base[:100].tolist(), (base + d)[:100].tolist(), n=4000)
    assert small["ci95"][1] - small["ci95"][0] > 1.5 * (big["ci95"][1] - big["ci95"][0])
    # per-query lists of other lengths were paired by position and the extra queries dropped without a word
    with pytest.raises(ValueError, match="3 baseline APs against 2"):
        bootstrap_difference([0.5, 0.5, 0.5], [0.6, 0.6])


def test_locate_finds_entries_in_an_unsorted_shortlist():
    ids = np.array([40, 7, 19, 3])
    pos, found = locate(ids, np.array([3, 40, 8, 19, 100, 0]))
    assert found.tolist() == [True, True, False, True, False, False]
    assert ids[pos[found]].tolist() == [3, 40, 19]
    pos, found = locate(np.array([], np.int64), np.array([1, 2]))
    assert not found.any() and pos.shape == (2,)


def test_similarity_follows_a_reordered_shortlist():

    ids = np.array([[4, 2, 0, 3, 1]])
    sims = np.array([[0.9, 0.7, 0.5, 0.3, 0.1]], np.float32)
    np.testing.assert_allclose(
        similarity_along(np.array([[4, 0, 3, 1, 2]]), ids, sims), [[0.9, 0.5, 0.3, 0.1, 0.7]], rtol=1e-6
    )
    # an image that is not among the row's neighbours got a neighbour's similarity (or an IndexError)
    for stranger in (5, 9):
        with pytest.raises(ValueError, match=rf"shortlist row 0: image\(s\) \[{stranger}\] are not among"):
            similarity_along(np.array([[4, 0, 3, 1, stranger]]), ids, sims)


@pytest.mark.parametrize("junk_mode", ["none", "ames"])
def test_grid_sweep_equals_evaluating_each_reranked_ranking(junk_mode):

    rng = np.random.default_rng(1)
    n_q, n_db = 9, 60
    ids = np.stack([rng.permutation(n_db) for _ in range(n_q)])
    sims = np.sort(rng.uniform(-0.2, 1, (n_q, n_db)).astype(np.float32), axis=1)[:, ::-1].copy()
    sims[:, 3:6] = sims[:, 3:4]  # ties in the global score
    gnd = []
    for i in range(n_q):
        pick = rng.permutation(n_db)
        gnd.append({"easy": pick[:4].tolist(), "hard": pick[4:9].tolist(), "junk": pick[9:12].tolist()})
    gnd[0] = {"easy": [], "hard": [], "junk": [1]}  # no positives at all: not evaluated
    gnd[1] = {"easy": ids[1, :3].tolist(), "hard": [], "junk": ids[1, 3:5].tolist()}  # no hard ones: H undefined
    # an image both positive and junk (a hand-written gnd.json): compute_map counts it and it shifts the positives
    # after it; the grid ignored it (Medium 8.33 in the grid against 41.67 evaluated, a review's example)
    gnd[3] = {"easy": ids[3, [1, 4, 30]].tolist(), "hard": ids[3, [7]].tolist(), "junk": ids[3, [1, 2, 7]].tolist()}
    gnd[5] = {"easy": ids[5, [0, 6]].tolist(), "hard": ids[5, [3, 12]].tolist(), "junk": ids[5, [3, 5]].tolist()}
    sl = protocol_shortlists(ids, gnd, junk_mode)
    sm = {p: (sims if sl[p] is ids else similarity_along(sl[p], ids, sims)) for p in sl}
    pairs = needed_pairs(sl, 40)
    logits = [rng.normal(size=len(p)).astype(np.float32) for p in pairs]
    logits[2][:] = 0.0  # ties in the fused score
    inliers = rng.integers(0, 40, size=(n_q, 30))  # sv verified the global top 30: the rest has no evidence
    ev = {p: geometric_evidence(lookup_inliers(ids, inliers, sl[p], 40)[0], 20) for p in sl}
    sweep = GridSweep(sl, sm, pairs, logits, gnd, n_db, ks=(5, 40), evidence=ev)  # 20 is asked for below all the same
    for k in (5, 20, 40):
        for lam in (0.0, 0.3, 1.0):
            for gamma in (0.1, 2.0):
                for mu in (0.0, 0.3):
                    ranked = grid_rankings(sl, sm, pairs, logits, lam, gamma, k, mu, ev)
                    want = evaluate_protocol_rankings(ranked, gnd, n_db)["mAP"]
                    assert sweep.mean_ap(lam, gamma, k, mu) == pytest.approx(want, abs=1e-4), (k, lam, gamma, mu)
    assert sweep.mean_ap(0.3, 2.0, 20, 0.3) != sweep.mean_ap(0.3, 2.0, 20, 0.0)  # the evidence is read
    # junk_mode none: one shortlist, one re-ranked ranking shared by the protocols (it was re-ranked and stored three
    # times, a researcher's trial); ames: one per protocol
    shared_ev = {p: ev["M"] if sl[p] is sl["M"] else ev[p] for p in sl}  # as the stage builds it (_evidence)
    for mu, evidence in ((0.0, None), (0.3, shared_ev)):
        ranked = grid_rankings(sl, sm, pairs, logits, 0.3, 2.0, 20, mu, evidence)
        assert (ranked["E"] is ranked["M"] is ranked["H"]) == (junk_mode == "none")
    # a truncated shortlist (knn.k 30): junk_mode ames moves the ignored images last *within* it, so an image both
    # positive and junk lands inside the re-ranked top (label 2), which the full shortlist above never shows
    short_ids, short_sims = ids[:, :30], sims[:, :30]
    sl2 = protocol_shortlists(short_ids, gnd, junk_mode)
    sm2 = {p: (short_sims if sl2[p] is short_ids else similarity_along(sl2[p], short_ids, short_sims)) for p in sl2}
    pairs2 = needed_pairs(sl2, 30)
    logits2 = [rng.normal(size=len(p)).astype(np.float32) for p in pairs2]
    sweep2 = GridSweep(sl2, sm2, pairs2, logits2, gnd, n_db, ks=(22, 30))
    for k in (22, 30):
        for lam, gamma in ((0.0, 1.0), (0.4, 0.1), (1.0, 2.0)):
            want = evaluate_protocol_rankings(grid_rankings(sl2, sm2, pairs2, logits2, lam, gamma, k), gnd, n_db)["mAP"]
            assert sweep2.mean_ap(lam, gamma, k) == pytest.approx(want, abs=1e-4), (k, lam, gamma)
    with pytest.raises(ValueError, match="beyond the largest"):
        sweep.mean_ap(0.5, 0.5, 41)
    # queries without features score AP 0 at every point, as the evaluated ranking does (the grid and its oracle
    # scored them on their ranking, which the evaluation does not)
    nothing = np.zeros(n_q, bool)
    nothing[[1, 4]] = True
    blind = GridSweep(sl, sm, pairs, logits, gnd, n_db, ks=(5, 40), evidence=ev, retrieved_nothing=nothing)
    for k, lam, gamma, mu in ((5, 0.3, 2.0, 0.0), (40, 1.0, 0.1, 0.3)):
        ranked = grid_rankings(sl, sm, pairs, logits, lam, gamma, k, mu, ev)
        want = evaluate_protocol_rankings(ranked, gnd, n_db, retrieved_nothing=nothing)["mAP"]
        assert blind.mean_ap(lam, gamma, k, mu) == pytest.approx(want, abs=1e-4)
        assert blind.mean_ap(lam, gamma, k, mu)["M"] < sweep.mean_ap(lam, gamma, k, mu)["M"]
    with pytest.raises(ValueError, match="2 flags for 9 queries"):
        GridSweep(sl, sm, pairs, logits, gnd, n_db, ks=(5,), retrieved_nothing=[True, False])


def test_geometric_evidence_follows_the_shortlist_and_saturates():
    ids = np.array([[7, 3, 9, 1, 4]])
    inliers = np.array([[50, 0, 12, 3]])  # sv verified the top 4 of the global shortlist
    counts, missing = lookup_inliers(ids, inliers, np.array([[9, 4, 7, 1, 3]]), 5)
    np.testing.assert_array_equal(counts, [[12, 0, 50, 3, 0]])
    assert missing == 1  # image 4 was beyond sv's depth: evidence 0, counted
    np.testing.assert_allclose(geometric_evidence(counts, 20), [[0.6, 0.0, 1.0, 0.15, 0.0]])
    with pytest.raises(ValueError, match="inliers_cap"):
        geometric_evidence(counts, 0)
    # the fused score: AMES's, plus the weighted evidence; no features stays -inf; a weight without evidence fails
    g, lg = np.array([0.5, -np.inf]), np.array([1.0, 1.0])
    e = np.array([1.0, 1.0])
    assert fused_score(g, lg, 0.5, 1.0, 0.3, e)[0] - fused_score(g, lg, 0.5, 1.0)[0] == pytest.approx(0.3)
    assert np.isneginf(fused_score(g, lg, 0.5, 1.0, 0.3, e)[1])
    with pytest.raises(ValueError, match="geometric evidence"):
        fused_score(g, lg, 0.5, 1.0, 0.3)
    # a confident sv match lifts an image AMES missed above one it lifted: lambda 0, promote-clipped logits
    shortlist, sims = np.array([[0, 1, 2]]), np.array([[0.9, 0.8, 0.7]], np.float32)
    logit = np.array([[0.0, 3.0, 0.0]], np.float32)
    ev = geometric_evidence(np.array([[0, 0, 40]]), 20)
    np.testing.assert_array_equal(rerank(shortlist, sims, logit, 0.0, 1.0, 3), [[1, 0, 2]])
    np.testing.assert_array_equal(rerank(shortlist, sims, logit, 0.0, 1.0, 3, 1.0, ev), [[2, 1, 0]])


def test_sv_inliers_must_come_from_the_same_shortlist(tmp_path):
    knn, other = tmp_path / "knn.h5", tmp_path / "other_knn.h5"
    ranking = tmp_path / "sv_ranking.h5"
    with h5py.File(ranking, "w") as f:
        f.create_dataset("ranks", data=np.zeros((2, 3), np.int32))
        f.create_dataset("inliers", data=np.array([[9, 0, 4], [1, 2, 3]], np.int32))
        f.attrs["kind"] = "ranking"
    sv_json = tmp_path / "sv.json"
    sv_json.write_text(json.dumps({"artifacts": {"knn": str(knn)}, "timing": {"rerank_seconds": 1.5}}))
    inliers, timing = read_sv_inliers({"json": str(sv_json), "ranking": str(ranking)}, knn)
    np.testing.assert_array_equal(inliers, [[9, 0, 4], [1, 2, 3]])
    assert timing["rerank_seconds"] == 1.5
    with pytest.raises(ValueError, match="sv.json: spatial verification re-ranked"):
        read_sv_inliers({"json": str(sv_json), "ranking": str(ranking)}, other)
    with h5py.File(ranking, "w") as f:
        f.create_dataset("ranks", data=np.zeros((2, 3), np.int32))
        f.attrs["kind"] = "ranking"
    with pytest.raises(ValueError, match="sv_ranking.h5: a ranking file without 'inliers' .not an evaluate_sv"):
        read_sv_inliers({"json": str(sv_json), "ranking": str(ranking)}, knn)
    with h5py.File(ranking, "w") as f:  # another HDF5 file in its place: an array of that name is not enough
        f.create_dataset("inliers", data=np.zeros((2, 3), np.int32))
        f.attrs["kind"] = "neighbours"
    with pytest.raises(ValueError, match="sv_ranking.h5: not a ranking file .kind='neighbours'"):
        read_sv_inliers({"json": str(sv_json), "ranking": str(ranking)}, knn)


def test_entries_sv_did_not_verify_are_counted_and_warned(caplog):
    from retrieval.stages import ames_evaluate as stage  # noqa: PLC0415 (a private helper of the stage)

    ids = np.array([[7, 3, 9, 1, 4, 6]])
    inliers = np.array([[50, 0, 12, 3]])  # sv verified the global top 4
    junk_moved = np.array([[7, 9, 1, 4, 6, 3]])  # junk_mode ames moved image 3 out: 4 and 6 move up
    with caplog.at_level("WARNING"):
        assert stage._unverified(ids, inliers, junk_moved, 5, "demo") == 2  # images 4 and 6, now in the top 5
    assert "2 shortlisted entries (top 5, Medium) were not verified" in caplog.text and "sv.num_rerank" in caplog.text
    assert stage._unverified(ids, inliers, ids, 4, "demo") == 0


def test_a_tie_on_validation_goes_to_the_middle_of_the_tied_points():
    from retrieval.stages import ames_evaluate as stage  # noqa: PLC0415 (a private helper of the stage)

    lambdas, gammas, weights = [0.0, 0.1, 0.2, 0.3, 0.4], [0.1, 0.5, 1.0], [0.0, 0.3, 1.0]
    # the best score (90) holds on a tied region: lambda 0.1-0.4 at weight 1.0 and every gamma, plus one stray point
    # at its edge in grid order (lambda 0.0, gamma 0.1, weight 0.3); everything else scores lower
    tied = {(lam, g, 1.0) for lam in lambdas[1:] for g in gammas} | {(0.0, 0.1, 0.3)}
    rows = [
        {
            "num_rerank": 100,
            "lambda": lam,
            "gamma": g,
            "geometry_weight": w,
            "mAP_M": 90.0 if (lam, g, w) in tied else 80.0,
        }
        for lam in lambdas
        for g in gammas
        for w in weights
    ]
    # grid order alone takes the stray edge point; the tied points' centroid, in grid steps, is (2.31, 0.92, 1.92)
    # (lambda, gamma, weight), nearest to lambda 0.2, gamma 0.5, weight 1.0
    assert max(rows, key=lambda r: r["mAP_M"])["lambda"] == 0.0
    assert stage._point(stage._best(rows)) == {"num_rerank": 100, "lambda": 0.2, "gamma": 0.5, "geometry_weight": 1.0}
    # the centroid, not a count of tied neighbours: lambda steps 0-2 and 5-9 tie; a count (2 each for 1 and 6-8)
    # would take step 1, the centroid (4.75) takes step 5
    line = [{"num_rerank": 100, "lambda": i / 10, "mAP_M": 90.0 if i not in (3, 4) else 80.0} for i in range(10)]
    assert stage._best(line)["lambda"] == 0.5
    # a single best point is taken as it is
    rows[0]["mAP_M"] = 95.0
    assert stage._best(rows) is rows[0]
    # two tied points mirror each other about their centroid: grid order; points without a score never win
    two = [
        {"num_rerank": 100, "lambda": lam, "gamma": 0.1, "mAP_M": s}
        for lam, s in ((0.0, None), (0.1, 70.0), (0.2, 70.0))
    ]
    assert stage._best(two)["lambda"] == 0.1
    # no point has a score (a GLDv2 part without queries): the first row, not a tie over every point
    none = [
        {"num_rerank": k, "lambda": lam, "gamma": 0.1, "mAP@100_Public": None}
        for k in (25, 50)
        for lam in (0.0, 0.5, 1.0)
    ]
    assert stage._best(none, "mAP@100_Public") is none[0]

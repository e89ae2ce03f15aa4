"""SSP pieces: PQ anchors, the structure similarity, the KL loss and the adapter's training."""

import faiss
import numpy as np
import pytest
import torch

from retrieval.methods.ssp import (
    SSPTrainConfig,
    fit_pq_anchors,
    has_direction,
    ssp_loss,
    structure_similarity,
    train_adapter,
)


def test_anchors_shape_and_clear_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    a = fit_pq_anchors(x, m=4, nbits=3, min_points_per_centroid=10)
    assert a.shape == (4, 8, 4)
    # each codeword lies in its sub-space's data range: the k-means centres of the sub-vectors
    assert np.abs(a).max() < np.abs(x).max()
    with pytest.raises(ValueError, match="must divide"):
        fit_pq_anchors(x, m=5, nbits=3)
    with pytest.raises(ValueError, match="lower ssp.anchors.nbits"):
        fit_pq_anchors(x, m=4, nbits=8, min_points_per_centroid=39, source="demo-train")


def test_anchors_sample_as_ssp_does(monkeypatch):
    """SSP's anchor script samples at most 1000 rows per codeword (faiss's default is 256): the k-means must see
    every row up to that bound, and a lower bound must reach faiss."""
    made = []
    real = faiss.ProductQuantizer
    monkeypatch.setattr(faiss, "ProductQuantizer", lambda *a: made.append(real(*a)) or made[-1])
    x = np.random.default_rng(1).normal(size=(1500, 8)).astype(np.float32)
    default = fit_pq_anchors(x, m=2, nbits=1, min_points_per_centroid=1)
    assert made[-1].cp.max_points_per_centroid == 1000
    # 1500 rows, 2 codewords: up to 2000 rows are used, so the default is all of them
    np.testing.assert_array_equal(
        default, fit_pq_anchors(x, m=2, nbits=1, min_points_per_centroid=1, max_points_per_centroid=10**6)
    )
    with pytest.raises(
        ValueError, match="max_points_per_centroid .5. is below ssp.anchors.min_points_per_centroid .39."
    ):
        fit_pq_anchors(x, m=2, nbits=1, max_points_per_centroid=5)
    assert not np.array_equal(
        default, fit_pq_anchors(x, m=2, nbits=1, min_points_per_centroid=1, max_points_per_centroid=100)
    )


def test_structure_similarity_against_direct_computation():
    rng = np.random.default_rng(1)
    x, a = rng.normal(size=(3, 8)), rng.normal(size=(2, 5, 4))
    got = structure_similarity(torch.tensor(x), torch.tensor(a), tau=0.1).numpy()
    for i in range(3):
        for m in range(2):
            sub = x[i, 4 * m : 4 * m + 4] / np.linalg.norm(x[i, 4 * m : 4 * m + 4])
            cos = np.array([sub @ c / np.linalg.norm(c) for c in a[m]])
            e = np.exp((cos - cos.max()) / 0.1)
            np.testing.assert_allclose(got[i, m], e / e.sum(), rtol=1e-6)


def test_loss_is_zero_for_identical_structures_and_positive_otherwise():
    rng = np.random.default_rng(2)
    g, a = torch.tensor(rng.normal(size=(6, 8))), torch.tensor(rng.normal(size=(2, 5, 4)))
    assert float(ssp_loss(g, g, a, 0.1)) == pytest.approx(0.0, abs=1e-9)
    assert float(ssp_loss(torch.tensor(rng.normal(size=(6, 8))), g, a, 0.1)) > 0.1


def test_adapter_learns_a_linear_distortion_of_the_gallery_space(caplog):
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(600, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    distortion = np.eye(16) + 0.6 * rng.normal(size=(16, 16)) / 4
    light = gallery @ np.linalg.inv(distortion).T.astype(np.float32)  # the light model sees a linear distortion
    light = (light / np.linalg.norm(light, axis=1, keepdims=True)).astype(np.float32)
    anchors = fit_pq_anchors(gallery, m=4, nbits=3, min_points_per_centroid=10)
    with caplog.at_level("INFO"):
        model, curves, best = train_adapter(
            light,
            gallery,
            anchors,
            SSPTrainConfig(epochs=60, batch_size=32, lr=0.5, warmup_epochs=2, seed=0, select="loss"),
        )
    assert curves[best]["val_loss"] < 0.5 * curves[0]["val_loss"]  # the identity start is far worse
    # progress every 10 epochs (a real adapter is 8192 x 8192: minutes on a CPU)
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("epoch ")] == [
        f"epoch {e}/60" for e in range(10, 61, 10)
    ]
    with torch.no_grad():
        out = model(torch.from_numpy(light)).numpy()
    # the adapted query side agrees better with the gallery's own similarities
    before = np.corrcoef((light @ gallery.T).ravel(), (gallery @ gallery.T).ravel())[0, 1]
    after = np.corrcoef((out @ gallery.T).ravel(), (gallery @ gallery.T).ravel())[0, 1]
    assert after > before
    again, _, _ = train_adapter(
        light,
        gallery,
        anchors,
        SSPTrainConfig(epochs=60, batch_size=32, lr=0.5, warmup_epochs=2, seed=0, select="loss"),
    )
    for k, v in model.state_dict().items():  # deterministic for a seed
        torch.testing.assert_close(v, again.state_dict()[k])


def test_adapter_training_stops_when_the_held_out_loss_stops_falling():
    """Light descriptors equal to the gallery's: the identity start is already (nearly) optimal, the held-out loss
    soon stops falling, so training stops ``patience`` epochs after its best epoch, long before the schedule ends,
    and keeps that epoch; patience 0 runs every epoch."""
    rng = np.random.default_rng(5)
    gallery = rng.normal(size=(200, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    anchors = fit_pq_anchors(gallery, m=4, nbits=3, min_points_per_centroid=10)
    cfg = SSPTrainConfig(epochs=40, batch_size=32, lr=0.5, warmup_epochs=2, seed=0, patience=6, select="loss")
    _, curves, best = train_adapter(gallery, gallery, anchors, cfg)
    assert curves[-1]["epoch"] == best + 6 < 40
    assert all(c["val_loss"] >= curves[best]["val_loss"] for c in curves[best + 1 :])
    _, all_curves, _ = train_adapter(gallery, gallery, anchors, SSPTrainConfig(**{**cfg.__dict__, "patience": 0}))
    assert len(all_curves) == 41 and all_curves[: len(curves)] == curves  # the same run, cut short


def test_a_batch_above_the_training_images_scales_lr_by_the_batch_drawn(caplog):
    """batch_size 1e6 on 180 training images is one batch of 180 per epoch: the same run as batch_size 180 (lr
    scaled by 180/256, not by 1e6/256 = 3906x the base), said in a warning; patience not above the warmup is
    warned of too."""
    rng = np.random.default_rng(7)
    gallery = rng.normal(size=(200, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    light = gallery + 0.3 * rng.normal(size=gallery.shape).astype(np.float32)
    anchors = fit_pq_anchors(gallery, m=4, nbits=3, min_points_per_centroid=10)
    cfg = SSPTrainConfig(epochs=4, batch_size=180, lr=0.5, warmup_epochs=1, seed=0, patience=0, select="loss")
    _, exact, _ = train_adapter(light, gallery, anchors, cfg)
    assert "above the" not in caplog.text
    _, huge, _ = train_adapter(light, gallery, anchors, SSPTrainConfig(**{**cfg.__dict__, "batch_size": 10**6}))
    assert huge == exact and all(np.isfinite(c["train_loss"]) for c in huge[1:])
    assert "ssp.train.batch_size 1000000 is above the 180 training images" in caplog.text
    assert "lr 0.352" in caplog.text  # 0.5 x 180 / 256
    train_adapter(light, gallery, anchors, SSPTrainConfig(**{**cfg.__dict__, "patience": 1}))
    assert "ssp.train.patience 1 is not above warmup_epochs 1" in caplog.text


def test_adapter_training_needs_an_image_on_each_side_of_the_hold_out():
    """One image was all held out: no training step, and the mean of no losses (NaN) as the curve."""
    rng = np.random.default_rng(6)
    gallery = rng.normal(size=(40, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    anchors = fit_pq_anchors(gallery, m=4, nbits=3, min_points_per_centroid=4)
    cfg = SSPTrainConfig(epochs=2, batch_size=8, seed=0, val_fraction=0.9, select="loss")
    with pytest.raises(ValueError, match=r"SSP adapter: 1 training image\(s\); it needs at least 2"):
        train_adapter(gallery[:1], gallery[:1], anchors, cfg)
    _, curves, _ = train_adapter(gallery[:2], gallery[:2], anchors, cfg)  # 0.9 of 2 rounds to 2: one is kept to train
    assert all(np.isfinite(c["train_loss"]) for c in curves[1:])


def test_zero_sub_vectors_are_left_out_of_the_loss():
    """An unwhitened VLAD is exactly zero in the visual words no local feature fell in. Such a sub-vector has no
    cosine to any anchor, and its L2 normalisation's gradient (1/1e-12 per unit) wrecked the adapter at its first
    step on landmarks-mini (a new user's trial: a gradient norm of 5e10). Those terms are left out."""
    rng = np.random.default_rng(7)
    g = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(8, 16)), dtype=torch.float32), dim=-1)
    a = torch.tensor(rng.normal(size=(4, 5, 4)), dtype=torch.float32)
    x = g.clone()
    x[:3, 4:8] = 0  # sub-space 1 of three images: no local feature in its visual words
    valid = has_direction(x, 4) & has_direction(g, 4)
    assert valid.sum() == 8 * 4 - 3 and not valid[:3, 1].any()
    q = (x + 0.05 * torch.tensor(rng.normal(size=(8, 16)), dtype=torch.float32) * (x != 0)).requires_grad_()
    loss = ssp_loss(q, g, a, 0.1, valid)
    loss.backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().max() < 100 and (q.grad[:3, 4:8] == 0).all()
    # the mean over the terms kept: the loss of the images without a zero sub-vector, and sub-spaces 0, 2, 3 of the rest
    with torch.no_grad():
        full = ssp_loss(q[3:], g[3:], a, 0.1) * 5 * 4
        rest = sum(
            ssp_loss(q[:3, 4 * m : 4 * m + 4], g[:3, 4 * m : 4 * m + 4], a[m : m + 1], 0.1) * 3 for m in (0, 2, 3)
        )
    assert float(loss.detach()) == pytest.approx(float((full + rest) / valid.sum()), rel=1e-5)
    # without leaving them out, the zero sub-vectors' gradient is of the 1e12 order that wrecked the adapter
    q0 = q.detach().clone().requires_grad_()
    ssp_loss(q0, g, a, 0.1).backward()
    assert q0.grad.abs().max() > 1e6


def test_adapter_training_is_not_wrecked_by_zero_sub_vectors():
    """The linear distortion of test_adapter_learns_a_linear_distortion_of_the_gallery_space, with a quarter of the
    images zero in one sub-space on both sides (as a VLAD's empty visual word): the adapter still learns it."""
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(600, 16)).astype(np.float32)
    gallery[:150, 4:8] = 0
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    distortion = np.eye(16) + 0.6 * rng.normal(size=(16, 16)) / 4
    light = gallery @ np.linalg.inv(distortion).T.astype(np.float32)
    light[:150, 4:8] = 0
    light = (light / np.linalg.norm(light, axis=1, keepdims=True)).astype(np.float32)
    anchors = fit_pq_anchors(gallery, m=4, nbits=3, min_points_per_centroid=10)
    _, curves, best = train_adapter(
        light,
        gallery,
        anchors,
        SSPTrainConfig(epochs=30, batch_size=32, lr=0.5, warmup_epochs=2, seed=0, select="loss"),
    )
    losses = [c["val_loss"] for c in curves]
    assert np.isfinite(losses).all() and best > 0 and losses[best] < 0.6 * losses[0]
    assert max(losses[1:]) < 1.5 * losses[0]  # no epoch thrown far above the identity start


def test_the_kept_epoch_is_chosen_by_the_validation_score():
    """ssp.train.select: validation (the workflow's default): the epoch with the best score is kept, the identity
    start included, and patience counts epochs without a better score. On the demo the held-out SSP loss fell at
    every epoch while the adapter cost 22.6 Medium on demo-val: the loss alone keeps the last epoch."""
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(600, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    distortion = np.eye(16) + 0.6 * rng.normal(size=(16, 16)) / 4
    light = (gallery @ np.linalg.inv(distortion).T).astype(np.float32)
    light /= np.linalg.norm(light, axis=1, keepdims=True)
    anchors = fit_pq_anchors(gallery, m=4, nbits=3, min_points_per_centroid=10)
    cfg = dict(epochs=30, batch_size=32, lr=0.5, warmup_epochs=2, seed=0, patience=4)

    def prefers_the_identity(model):  # a validation split on which the adapter only hurts
        return -float((model.fc.weight - torch.eye(16)).norm() + model.fc.bias.norm())

    model, curves, best = train_adapter(
        light, gallery, anchors, SSPTrainConfig(**cfg, select="validation"), score=prefers_the_identity
    )
    assert best == 0 and len(curves) == 1 + 4  # stopped after 4 epochs without a better score
    assert all("val_score" in c for c in curves) and curves[0]["val_score"] == 0.0
    assert min(c["val_loss"] for c in curves[1:]) < curves[0]["val_loss"]  # the loss would have kept a later epoch
    torch.testing.assert_close(model.fc.weight, torch.eye(16))  # the identity is what is kept
    _, by_loss, kept = train_adapter(light, gallery, anchors, SSPTrainConfig(**cfg, select="loss"))
    assert kept > 0 and "val_score" not in by_loss[0]
    with pytest.raises(ValueError, match="needs the validation split"):
        train_adapter(light, gallery, anchors, SSPTrainConfig(**cfg, select="validation"))

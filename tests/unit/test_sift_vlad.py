"""SIFT extraction (RootSIFT, coordinates in full-image pixels) and the VLAD / whitening / kNN maths."""

import numpy as np
import pytest

from retrieval.features.sift import SiftConfig, extract_sift, rootsift
from retrieval.features.vlad import (
    apply_whitening,
    fit_pca_whitening,
    identity_whitening,
    train_codebook,
    vlad,
    whitening_applies,
)
from retrieval.search.exact import topk_neighbours
from retrieval.stages.aggregate import fit_codebook
from retrieval.stores.local_store import merge_local_chunks, write_local_chunk


def textured(h, w, seed=0):
    import cv2  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    im = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.uint8), (0, 0), 2)
    return cv2.normalize(im, None, 0, 255, cv2.NORM_MINMAX)


def test_rootsift_is_unit_norm_and_nonnegative():
    d = np.random.default_rng(0).uniform(0, 100, (20, 128))
    r = rootsift(d)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1.0, atol=1e-5)
    assert (r >= 0).all()


def test_crop_coordinates_are_in_full_image_pixels():
    patch = textured(120, 160)
    canvas = np.zeros((300, 400), np.uint8)
    canvas[50:170, 70:230] = patch
    cfg = SiftConfig(k=200)
    alone = extract_sift(patch, cfg)
    cropped = extract_sift(canvas, cfg, crop=[70, 50, 230, 170])
    assert len(alone["xy"]) > 20
    np.testing.assert_allclose(cropped["xy"], alone["xy"] + [70, 50], atol=1e-3)
    np.testing.assert_array_equal(cropped["image_size"], [400, 300])
    assert (np.diff(cropped["weight"]) <= 0).all(), "strongest first"


@pytest.mark.parametrize("k", [1, 60, 400, 5000])
def test_k_best_filter_gives_the_selection_over_all_keypoints(k):
    """OpenCV's nfeatures filter (descriptors computed for the k strongest only) must return the same rows, in the
    same order, as describing every keypoint and taking the first k by (-response, y, x, angle)."""
    import cv2  # noqa: PLC0415

    im = textured(240, 320, seed=2)
    out = extract_sift(im, SiftConfig(k=k))
    kp, desc = cv2.SIFT_create(contrastThreshold=0.02, edgeThreshold=10.0).detectAndCompute(im, None)
    assert len(kp) > 400, "the image must have more keypoints than the filter keeps"
    response = np.array([p.response for p in kp], np.float32)
    pts = np.array([p.pt for p in kp], np.float32)
    angle = np.array([p.angle for p in kp], np.float32)
    # keypoints with several orientations share position and response: the ties the order must settle
    _, counts = np.unique(np.c_[pts, response], axis=0, return_counts=True)
    assert (counts > 1).any()
    order = np.lexsort((angle, pts[:, 0], pts[:, 1], -response))[:k]
    assert len(out["xy"]) == min(k, len(kp))
    np.testing.assert_array_equal(out["xy"], pts[order])
    np.testing.assert_array_equal(out["orientation"], angle[order])
    np.testing.assert_array_equal(out["weight"], response[order])
    np.testing.assert_array_equal(out["descriptors"], rootsift(desc[order]).astype(np.float16))


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k"):
        SiftConfig(k=0)


def test_downscaling_maps_back_to_original_pixels():
    im = textured(400, 600, seed=1)
    out = extract_sift(im, SiftConfig(k=300, max_side=300))
    assert out["xy"][:, 0].max() > 300  # positions span the original width, not the resized one
    assert (out["xy"][:, 0] <= 600).all() and (out["xy"][:, 1] <= 400).all()


def test_downscaled_positions_are_pixel_centres_of_the_original():
    """An image made of 3 x 3 blocks of one grey level resizes (INTER_AREA, factor 1/3) to exactly the small image,
    so its keypoints are the small image's, and small pixel i is centred on full pixel 3 i + 1 = (i + 0.5) * 3 - 0.5.
    Mapping back by xy / s put every keypoint 1 px up and left of that (helper-106)."""
    small = textured(100, 150, seed=2)
    big = np.repeat(np.repeat(small, 3, axis=0), 3, axis=1)
    direct = extract_sift(small, SiftConfig(k=300))
    resized = extract_sift(big, SiftConfig(k=300, max_side=150))
    assert len(direct["xy"]) > 50
    np.testing.assert_array_equal(resized["descriptors"], direct["descriptors"])
    np.testing.assert_allclose(resized["xy"], (direct["xy"] + 0.5) * 3 - 0.5, atol=1e-3)
    np.testing.assert_allclose(resized["scale"], direct["scale"] * 3, rtol=1e-6)
    np.testing.assert_array_equal(resized["image_size"], [450, 300])


def test_vlad_normalisation():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(4, 8)).astype(np.float32)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    v = vlad(x, c, alpha=0.5)
    assert v.shape == (32,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert not vlad(np.zeros((0, 8), np.float32), c).any()
    # descriptors equal to a centroid contribute zero residual
    assert not vlad(np.repeat(c[:1], 5, axis=0), c).any()


def test_whitening_gives_identity_covariance_on_training_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20)) @ rng.normal(size=(20, 20)) + 3.0
    w = fit_pca_whitening(x, 10)
    y = (x - w["mean"]) @ w["projection"].T / np.sqrt(w["eigenvalues"])
    np.testing.assert_allclose(np.cov(y.T), np.eye(10), atol=1e-3)
    np.testing.assert_allclose(w["projection"] @ w["projection"].T, np.eye(10), atol=1e-5)
    assert np.linalg.norm(apply_whitening(x[:3], w), axis=1) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="dim=600"):
        fit_pca_whitening(x, 600)


def test_topk_neighbours_exact_and_self_excluded():
    rng = np.random.default_rng(0)
    db = rng.normal(size=(30, 6)).astype(np.float32)
    q = rng.normal(size=(4, 6)).astype(np.float32)
    ids, sims = topk_neighbours(q, db, 30)
    np.testing.assert_array_equal(ids, np.argsort(-(q @ db.T), axis=1))
    assert ids.dtype == np.int32 and sims.dtype == np.float32
    ids, _ = topk_neighbours(db, db, 5, exclude_self=True)
    assert ids.shape == (30, 5) and not (ids == np.arange(30)[:, None]).any()


def test_whitening_is_learned_only_from_enough_images_per_component():

    assert whitening_applies(320, 32, 10)[0] and not whitening_applies(319, 32, 10)[0]
    ok, reason = whitening_applies(85, 1024, 10)
    assert not ok and "85 images < whiten.min_images_per_dim 10 x whiten.dim 1024 = 10240" in reason
    assert whitening_applies(2, 1024, 0)[0]  # 0: always
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16)).astype(np.float32) * np.arange(1, 17, dtype=np.float32)
    ident = identity_whitening(16, reason)
    y = apply_whitening(x, ident, power=0.5)
    np.testing.assert_allclose(y, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-5)
    # a learned one changes the vectors (and their dimension)
    w = fit_pca_whitening(x, 8)
    assert apply_whitening(x, w, 0.5).shape == (50, 8)


def test_a_codebook_fitted_on_two_images_makes_their_vlads_opposite():
    """The reason the codebook stage warns below FEW_FIT_IMAGES: each centroid is the mean of its descriptors, so the
    images' residual sums cancel per word. Two images are (nearly) exactly opposite; N images about -1/(N-1) apart."""
    rng = np.random.default_rng(0)
    two = [rng.normal(size=(400, 16)).astype(np.float32) for _ in range(2)]
    c = train_codebook(np.concatenate(two), 8, niter=50, seed=0)
    a, b = (vlad(x, c, alpha=1.0) for x in two)
    assert float(a @ b) < -0.95
    many = [rng.normal(size=(150, 16)).astype(np.float32) for _ in range(30)]
    c = train_codebook(np.concatenate(many), 8, niter=50, seed=0)
    v = np.stack([vlad(x, c, alpha=1.0) for x in many])
    s = v @ v.T
    mean_off = (s.sum() - np.trace(s)) / (30 * 29)
    assert -0.06 < mean_off < -0.01  # about -1/29


def test_a_codebook_without_enough_descriptors_says_why_and_which_setting(tmp_path):
    """Blank photos (no feature at all) and a codebook.k above the descriptors there are each get a reason and
    the setting to change, naming the store (it was '0 training descriptors cannot make 64 centroids')."""
    rows = [
        {
            "descriptors": np.zeros((n, 4), np.float16),
            "xy": np.zeros((n, 2)),
            "scale": np.ones(n),
            "weight": np.ones(n),
            "orientation": np.zeros(n),
            "image_size": np.array([8, 8]),
        }
        for n in (0, 0, 0)
    ]
    chunk = tmp_path / "chunk_0.h5"
    write_local_chunk(chunk, rows, k=6, dim=4, backbone="test", row_start=0, n_total=3)
    merge_local_chunks([chunk], tmp_path / "local.h5", 3)
    args = dict(
        local_path=tmp_path / "local.h5",
        out_path=tmp_path / "cb.npz",
        manifest_path=tmp_path / "m.json",
        niter=5,
        max_descriptors=1000,
        seed=0,
        version="v",
        config={},
        preset="p",
        training_split="blank",
        local_version="l",
    )
    with pytest.raises(
        ValueError,
        match=r"local\.h5 \(blank\): none of its 3 images has a local feature .*: add images or fit on a larger",
    ):
        fit_codebook(k=4, **args)
    rows[0]["descriptors"] = np.ones((5, 4), np.float16)
    for key, shape in (("xy", (5, 2)), ("scale", 5), ("weight", 5), ("orientation", 5)):
        rows[0][key] = np.ones(shape)
    write_local_chunk(chunk, rows, k=6, dim=4, backbone="test", row_start=0, n_total=3)
    (tmp_path / "local.h5").unlink()
    merge_local_chunks([chunk], tmp_path / "local.h5", 3)
    with pytest.raises(ValueError, match=r"its 3 images have 5 local features in all, fewer than the codebook's 64"):
        fit_codebook(k=64, **args)
    with pytest.raises(ValueError, match=r"codebook\.max_descriptors \(3\) is below codebook\.k \(4\): raise it"):
        fit_codebook(k=4, **{**args, "max_descriptors": 3})
    assert not (tmp_path / "cb.npz").exists()


def test_the_few_images_warning_counts_only_images_with_features(tmp_path, caplog):
    """30 images of which 25 are blank (no feature): the codebook is fitted on 5, whose residuals cancel as the
    warning says; it counted every image (30, over FEW_FIT_IMAGES) and said nothing."""
    rng = np.random.default_rng(0)
    counts = [0] * 25 + [40] * 5
    rows = [
        {
            "descriptors": rng.normal(size=(n, 4)).astype(np.float16),
            "xy": np.zeros((n, 2)),
            "scale": np.ones(n),
            "weight": np.ones(n),
            "orientation": np.zeros(n),
            "image_size": np.array([8, 8]),
        }
        for n in counts
    ]
    chunk = tmp_path / "chunk_0.h5"
    write_local_chunk(chunk, rows, k=40, dim=4, backbone="test", row_start=0, n_total=30)
    merge_local_chunks([chunk], tmp_path / "local.h5", 30)
    args = dict(local_path=tmp_path / "local.h5", niter=5, max_descriptors=1000, seed=0, version="v", config={})
    args |= dict(preset="p", training_split="mostly-blank", local_version="l", k=4)
    with caplog.at_level("WARNING"):
        fit_codebook(out_path=tmp_path / "cb.npz", manifest_path=tmp_path / "m.json", **args)
    assert "mostly-blank has only 5 images with local features (of 30)" in caplog.text
    rows[:25] = [rows[-1]] * 25  # every image with features: 30 of them, no warning
    write_local_chunk(chunk, rows, k=40, dim=4, backbone="test", row_start=0, n_total=30)
    (tmp_path / "local.h5").unlink()
    merge_local_chunks([chunk], tmp_path / "local.h5", 30)
    caplog.clear()
    with caplog.at_level("WARNING"):
        fit_codebook(out_path=tmp_path / "cb2.npz", manifest_path=tmp_path / "m2.json", **args)
    assert "has only" not in caplog.text
    # one image: the rule for N images (-1/(N-1)) does not apply to it (helper-104); its residuals sum to about zero
    write_local_chunk(chunk, rows[-1:], k=40, dim=4, backbone="test", row_start=0, n_total=1)
    (tmp_path / "local.h5").unlink()
    merge_local_chunks([chunk], tmp_path / "local.h5", 1)
    caplog.clear()
    with caplog.at_level("WARNING"):
        fit_codebook(out_path=tmp_path / "cb3.npz", manifest_path=tmp_path / "m3.json", **args)
    assert "has only 1 image with local features. " in caplog.text
    assert "one image's sum to about zero on every word" in caplog.text and "-1/(N-1)" not in caplog.text

"""Images without features (all-zero global descriptors, retrieval/featureless.py) are no evidence: the fits leave
them out (PCA-whitening, Lw, SSP's anchors and adapter), and SSP's evaluation flags each run's own such queries."""

import numpy as np
import torch

from conftest import evaluation_context
from retrieval.features.vlad import identity_whitening, l2_normalise
from retrieval.methods.ssp import Adapter
from retrieval.runtime import load_npz, read_json, write_json
from retrieval.stages.lw import fit_lw_stage
from retrieval.stages.ssp import anchors_stage, evaluate_ssp_stage, train_query_stage
from retrieval.stages.whiten import fit_pca_whitening_stage
from retrieval.stores.global_store import write_global
from retrieval.stores.local_store import write_local_chunk


def _with_zero_rows(x, every=4):
    """x with an all-zero row inserted before every ``every``-th row, and the mask of the inserted rows."""
    out, zero = [], []
    for i, row in enumerate(x):
        if i % every == 0:
            out.append(np.zeros_like(row))
            zero.append(True)
        out.append(row)
        zero.append(False)
    return np.stack(out), np.array(zero)


def test_whitening_is_fitted_on_the_images_with_features(tmp_path):
    x = l2_normalise(np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32))
    padded, zero = _with_zero_rows(x)
    write_global(tmp_path / "clean.h5", x)
    write_global(tmp_path / "padded.h5", padded)
    args = dict(dim=4, min_images_per_dim=0, max_images=10_000, version="v", config={}, preset="cpu",
                training_split="s", vlad_version="v")  # fmt: skip
    fit_pca_whitening_stage(tmp_path / "clean.h5", tmp_path / "a.npz", tmp_path / "a.json", **args)
    fit_pca_whitening_stage(tmp_path / "padded.h5", tmp_path / "b.npz", tmp_path / "b.json", **args)
    a, b = load_npz(tmp_path / "a.npz"), load_npz(tmp_path / "b.npz")
    for key in ("mean", "projection", "eigenvalues"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6)
    manifest = read_json(tmp_path / "b.json")
    assert manifest["n_without_features"] == zero.sum() and manifest["n_training_vectors"] == len(x)
    # nothing but images without features, or too few with features for the components: no whitening, said so
    write_global(tmp_path / "blank.h5", np.zeros((5, 8), np.float32))
    fit_pca_whitening_stage(tmp_path / "blank.h5", tmp_path / "c.npz", tmp_path / "c.json", **args)
    assert not bool(load_npz(tmp_path / "c.npz")["applied"])
    write_global(tmp_path / "few.h5", np.concatenate([x[:4], np.zeros((6, 8), np.float32)]))
    fit_pca_whitening_stage(tmp_path / "few.h5", tmp_path / "d.npz", tmp_path / "d.json", **args)
    assert "4 image(s) with features, too few" in read_json(tmp_path / "d.json")["decision"]


def test_lw_is_fitted_on_the_images_with_features(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(12), 5)
    x = l2_normalise((rng.normal(size=(12, 6))[labels] + 0.3 * rng.normal(size=(60, 6))).astype(np.float32))
    padded, zero = _with_zero_rows(x)
    padded_labels = np.full(len(padded), -1)
    padded_labels[~zero] = labels
    padded_labels[zero] = labels[: zero.sum()]  # zero rows labelled like real images: they would make pairs
    cfg = {"max_pairs": 100_000, "seed": 0, "ridge": 0.1}
    for name, xs, ls in (("clean", x, labels), ("padded", padded, padded_labels)):
        write_global(tmp_path / f"{name}.h5", xs)
        write_json(tmp_path / f"{name}.json", {"db": [{"label": int(v)} for v in ls]})
        fit_lw_stage(tmp_path / f"{name}.h5", tmp_path / f"{name}.json", tmp_path / f"{name}.npz",
                     tmp_path / f"{name}_m.json", cfg, "v", "cpu", "s", "g")  # fmt: skip
    a, b = load_npz(tmp_path / "clean.npz"), load_npz(tmp_path / "padded.npz")
    for key in ("mean", "projection", "eigenvalues"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5)
    assert read_json(tmp_path / "padded_m.json")["n_without_features"] == zero.sum()


def test_ssp_anchors_are_fitted_on_the_images_with_features(tmp_path):
    x = l2_normalise(np.random.default_rng(2).normal(size=(300, 8)).astype(np.float32))
    padded, zero = _with_zero_rows(x, every=2)
    cfg = {
        "m": 2,
        "nbits": 3,
        "niter": 10,
        "nredo": 1,
        "seed": 0,
        "min_points_per_centroid": 1,
        "max_points_per_centroid": 1000,
    }
    for name, xs in (("clean", x), ("padded", padded)):
        write_global(tmp_path / f"{name}.h5", xs)
        anchors_stage(
            tmp_path / f"{name}.h5", tmp_path / f"{name}.npy", tmp_path / f"{name}.json", cfg, "v", "cpu", "s"
        )
    np.testing.assert_array_equal(np.load(tmp_path / "padded.npy"), np.load(tmp_path / "clean.npy"))
    assert read_json(tmp_path / "padded.json")["n_without_features"] == zero.sum()


def test_ssp_scores_each_run_with_its_own_queries_without_features(tmp_path):
    """Query 0 has no light descriptors but a gallery descriptor; query 1 the other way round. Each is AP 0 only in
    the runs whose query model found nothing in it."""
    rng = np.random.default_rng(3)
    d, n_db = 4, 12
    db = l2_normalise(rng.normal(size=(n_db, d)).astype(np.float32))
    write_global(tmp_path / "db.h5", db)
    q_gallery = db[[0, 4, 8]].copy()
    q_gallery[1] = 0.0  # the gallery model describes nothing in query 1
    write_global(tmp_path / "query.h5", q_gallery)
    # light local descriptors: query 0 none, queries 1 and 2 one each, near their positives' database vectors
    rows = []
    for m, near in ((0, 0), (1, 4), (1, 8)):
        rows.append(
            {
                "descriptors": db[[near] * m].astype(np.float16),
                "xy": np.zeros((m, 2), np.float32),
                "scale": np.ones(m, np.float32),
                "weight": np.ones(m, np.float32),
                "orientation": np.zeros(m, np.float32),
                "image_size": np.array([10, 10], np.int32),
            }
        )
    write_local_chunk(tmp_path / "light.h5", rows, k=1, dim=d, backbone="sift", row_start=0, n_total=3)
    np.savez(tmp_path / "codebook.npz", centroids=np.zeros((1, d), np.float32))  # VLAD of one word: the descriptor
    np.savez(tmp_path / "whiten.npz", **identity_whitening(d, "test"))
    torch.save({"state": Adapter(d).state_dict(), "dim": d}, tmp_path / "adapter.pt")  # the identity map
    write_json(
        tmp_path / "lists.json",
        {
            "query": [{"name": f"q{i}", "path": f"q{i}.jpg"} for i in range(3)],
            "db": [{"name": f"d{i}", "path": f"d{i}.jpg"} for i in range(n_db)],
            "crop_queries": False,
        },
    )
    write_json(tmp_path / "gnd.json", {"gnd": [{"easy": [i], "hard": [], "junk": []} for i in (0, 4, 8)]})
    write_json(
        tmp_path / "global.json", {"per_query_ap": {p: {"names": ["q0", "q1", "q2"], "ap": [0.5] * 3} for p in "EMH"}}
    )
    ctx = evaluation_context(tmp_path, "ssp", csv_top=3, n_bootstrap=10)
    sift = {"k": 10}
    evaluate_ssp_stage(ctx, str(tmp_path / "light.h5"), str(tmp_path / "codebook.npz"), str(tmp_path / "whiten.npz"),
                       str(tmp_path / "adapter.pt"), str(tmp_path / "query.h5"), str(tmp_path / "db.h5"), 1.0, 0.5,
                       sift, sift, cost_images=0)  # fmt: skip
    out = read_json(tmp_path / "ssp.json")
    assert out["queries_without_features"] == ["q0"]
    assert out["per_query_ap"]["E"]["ap"] == [0.0, 1.0, 1.0]  # the light model found nothing in q0
    gallery = out["alongside"]["symmetric_gallery"]["metrics"]["mAP"]["E"]
    assert abs(gallery - 100 * 2 / 3) < 0.01  # q0 found by the gallery model, q1 not described by it: AP 0


def _light_store(path, rows_desc, d):
    """A light local store of one descriptor (or none: a row of None) per image."""
    rows = []
    for v in rows_desc:
        m = 0 if v is None else 1
        rows.append(
            {
                "descriptors": (np.zeros((0, d)) if v is None else v[None]).astype(np.float16),
                "xy": np.zeros((m, 2), np.float32),
                "scale": np.ones(m, np.float32),
                "weight": np.ones(m, np.float32),
                "orientation": np.zeros(m, np.float32),
                "image_size": np.array([10, 10], np.int32),
            }
        )
    write_local_chunk(path, rows, k=1, dim=d, backbone="sift", row_start=0, n_total=len(rows))


def test_ssp_adapter_is_fitted_on_the_images_with_features_on_both_sides(tmp_path):
    """Images whose light descriptor or gallery descriptor is empty are left out: the adapter trained with them in the
    files is the one trained without them, to the bit."""
    rng = np.random.default_rng(4)
    d, n = 4, 48
    gallery = l2_normalise(rng.normal(size=(n, d)).astype(np.float32))
    light = l2_normalise((gallery + 0.3 * rng.normal(size=(n, d))).astype(np.float32))
    np.savez(tmp_path / "codebook.npz", centroids=np.zeros((1, d), np.float32))  # VLAD of one word: the descriptor
    np.savez(tmp_path / "whiten.npz", **identity_whitening(d, "test"))
    np.save(tmp_path / "anchors.npy", rng.normal(size=(2, 8, 2)).astype(np.float32))
    # padded: every 4th image has no light descriptor, every 5th no gallery descriptor (both are images with features
    # only on the other side)
    p_light, p_gallery, no_light, no_gallery = [], [], 0, 0
    for i in range(n):
        if i % 4 == 0:
            p_light.append(None)
            p_gallery.append(gallery[(i + 1) % n])
            no_light += 1
        if i % 5 == 0:
            p_light.append(light[(i + 2) % n])
            p_gallery.append(np.zeros(d, np.float32))
            no_gallery += 1
        p_light.append(light[i])
        p_gallery.append(gallery[i])
    cfg = {"epochs": 3, "batch_size": 16, "patience": 0, "warmup_epochs": 1, "select": "loss"}  # no validation split
    for name, ls, gs in (("clean", list(light), gallery), ("padded", p_light, np.stack(p_gallery))):
        _light_store(tmp_path / f"{name}_light.h5", ls, d)
        write_global(tmp_path / f"{name}_gallery.h5", gs)
        train_query_stage(str(tmp_path / f"{name}_light.h5"), str(tmp_path / "codebook.npz"),
                          str(tmp_path / "whiten.npz"), str(tmp_path / f"{name}_gallery.h5"),
                          str(tmp_path / "anchors.npy"), str(tmp_path / f"{name}.pt"), str(tmp_path / f"{name}_c.json"),
                          str(tmp_path / f"{name}_m.json"), 1.0, 0.5, cfg, "v", "cpu", "s")  # fmt: skip
    a = torch.load(tmp_path / "clean.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "padded.pt", weights_only=True)["state"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)
    assert read_json(tmp_path / "clean_c.json") == read_json(tmp_path / "padded_c.json")
    manifest = read_json(tmp_path / "padded_m.json")
    assert manifest["n_without_features"] == no_light + no_gallery and manifest["n_training_images"] == n

"""The global descriptors of a large database are written in blocks: the same rows as in memory, whatever the block."""

import tracemalloc

import h5py
import numpy as np
import pytest

from retrieval.features.vlad import apply_whitening, fit_pca_whitening, vlad
from retrieval.runtime import load_npz
from retrieval.stages import whiten as whiten_stage
from retrieval.stages.aggregate import aggregate_vlad, backbone_global
from retrieval.stages.whiten import apply_pca_whitening_stage, fit_pca_whitening_stage
from retrieval.stores import global_store
from retrieval.stores.global_store import read_global, write_global
from retrieval.stores.local_store import write_local_chunk


def _local_store(path, n, k, d, rng, global_desc=None):
    rows = []
    for i in range(n):
        m = int(rng.integers(0, k + 1)) if i % 5 else 0  # every fifth image has no features
        x = rng.normal(size=(m, d)).astype(np.float32)
        rows.append(
            {
                "descriptors": (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)).astype(np.float16),
                "xy": np.zeros((m, 2), np.float32),
                "scale": np.ones(m, np.float32),
                "weight": np.arange(m, 0, -1).astype(np.float32),
                "orientation": np.zeros(m, np.float32),
                "image_size": np.array([10, 10], np.int32),
            }
        )
    write_local_chunk(path, rows, k=k, dim=d, backbone="test", row_start=0, n_total=n, global_desc=global_desc)
    return rows


def test_vlad_and_whitening_are_written_in_blocks_with_the_rows_of_one_pass(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = _local_store(tmp_path / "local.h5", 53, 6, 8, rng)
    centroids = rng.normal(size=(4, 8)).astype(np.float32)
    np.savez(tmp_path / "codebook.npz", centroids=centroids)
    aggregate_vlad(tmp_path / "local.h5", tmp_path / "codebook.npz", tmp_path / "vlad.h5", 0.5, "v", block=7)
    want = np.stack([vlad(r["descriptors"].astype(np.float32), centroids, 0.5) for r in rows])
    got = read_global(tmp_path / "vlad.h5")
    np.testing.assert_array_equal(got, want)
    with h5py.File(tmp_path / "vlad.h5") as f:
        assert f.attrs["kind"] == "global" and f.attrs["dim"] == 32 and f.attrs["method"] == "vlad"

    w = {**fit_pca_whitening(got, 6), "applied": np.array(True), "reason": np.array("test")}
    np.savez(tmp_path / "whiten.npz", **w)
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 32 * 10)  # 10 rows of the 32-d VLAD at a time
    blocks = []

    def whiten(x, *args):
        blocks.append(len(x))
        return apply_whitening(x, *args)

    monkeypatch.setattr(whiten_stage, "whiten", whiten)
    apply_pca_whitening_stage(tmp_path / "vlad.h5", tmp_path / "whiten.npz", tmp_path / "global.h5", 0.5, "v")
    assert blocks == [10] * 5 + [3]
    one_pass = apply_whitening(got, load_npz(tmp_path / "whiten.npz"), 0.5)
    np.testing.assert_allclose(read_global(tmp_path / "global.h5"), one_pass, rtol=1e-5, atol=1e-6)
    assert not read_global(tmp_path / "global.h5")[::5].any()  # images without features stay zero


def test_whitening_names_the_file_with_non_finite_values_and_leaves_no_output(tmp_path):
    x = np.ones((30, 4), np.float32)
    x[17, 2] = np.nan
    write_global(tmp_path / "vlad.h5", x)
    np.savez(
        tmp_path / "whiten.npz",
        applied=np.array(False),
        reason=np.array("off"),
        mean=np.zeros(4, np.float32),
        projection=np.zeros((0, 4), np.float32),
        eigenvalues=np.zeros(0, np.float32),
    )
    with pytest.raises(ValueError, match=r"vlad\.h5: global descriptors contain NaN"):
        apply_pca_whitening_stage(tmp_path / "vlad.h5", tmp_path / "whiten.npz", tmp_path / "global.h5", 0.5, "v")
    assert not list(tmp_path.glob("*global.h5*"))  # no half-written file under the final or a temporary name


def test_vlad_memory_follows_the_block_not_the_database(tmp_path):
    rng = np.random.default_rng(1)
    _local_store(tmp_path / "local.h5", 3000, 2, 8, rng)
    np.savez(tmp_path / "codebook.npz", centroids=rng.normal(size=(64, 8)).astype(np.float32))
    tracemalloc.start()
    try:
        aggregate_vlad(tmp_path / "local.h5", tmp_path / "codebook.npz", tmp_path / "vlad.h5", 0.5, "v", block=16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read_global(tmp_path / "vlad.h5").shape == (3000, 512)
    assert peak < 1_000_000  # the whole array would be 6.1 MB (3000 x 512 float32); a block of 16 is 33 KB


def test_whitening_is_fitted_on_the_sampled_rows_read_block_by_block(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(90, 16)).astype(np.float32)
    write_global(tmp_path / "vlad.h5", x)
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 16 * 8)  # 8 rows at a time
    args = dict(dim=4, min_images_per_dim=0, version="v", config={}, preset="cpu", training_split="s", vlad_version="v")
    fit_pca_whitening_stage(tmp_path / "vlad.h5", tmp_path / "w.npz", tmp_path / "m.json", max_images=40, **args)
    sample = x[np.sort(np.random.default_rng(0).choice(90, 40, replace=False))]  # the stage's seeded subset
    got, want = load_npz(tmp_path / "w.npz"), fit_pca_whitening(sample, 4)
    for key in ("mean", "projection", "eigenvalues"):
        np.testing.assert_array_equal(got[key], want[key])
    # only the sample is held: 100,000 x 64 float32 would be 25.6 MB (the manifest's sha1 reads 4 MB pieces)
    write_global(tmp_path / "big.h5", rng.normal(size=(100_000, 64)).astype(np.float32))
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 64 * 1000)
    tracemalloc.start()
    try:
        fit_pca_whitening_stage(tmp_path / "big.h5", tmp_path / "w2.npz", tmp_path / "m2.json", max_images=40, **args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12_000_000


def test_a_file_of_another_kind_is_named(tmp_path):
    with h5py.File(tmp_path / "local.h5", "w") as f:
        f.attrs["kind"] = "local"
        f.create_dataset("descriptors", data=np.zeros((3, 4), np.float32))
    np.savez(tmp_path / "w.npz", applied=np.array(False), mean=np.zeros(4, np.float32), eigenvalues=np.zeros(0))
    with pytest.raises(ValueError, match=r"local\.h5: not a global-descriptor file \(kind='local'\)"):
        apply_pca_whitening_stage(tmp_path / "local.h5", tmp_path / "w.npz", tmp_path / "g.h5", 0.5, "v")
    with pytest.raises(ValueError, match=r"local\.h5: not a global-descriptor file"):
        read_global(tmp_path / "local.h5")


def test_a_backbones_global_descriptors_are_copied_in_blocks(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    g = rng.normal(size=(4000, 256)).astype(np.float32)  # 4.1 MB
    _local_store(tmp_path / "local.h5", 4000, 1, 4, rng, global_desc=g)
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 256 * 100)  # 100 rows at a time
    tracemalloc.start()
    try:
        backbone_global(tmp_path / "local.h5", tmp_path / "global.h5", "dinov2", "v")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(read_global(tmp_path / "global.h5"), g)
    with h5py.File(tmp_path / "global.h5") as f:
        assert f.attrs["method"] == "dinov2-global" and f.attrs["dim"] == 256 and f.attrs["version"] == "v"
    assert peak < 1_000_000

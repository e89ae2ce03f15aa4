"""The global descriptors of a large database are written in blocks: the same rows as in memory, whatever the block."""

import dataclasses
import tracemalloc

import h5py
import numpy as np
import pytest

from conftest import evaluation_context
from retrieval.featureless import featureless_rows
from retrieval.features.vlad import apply_whitening, fit_pca_whitening, identity_whitening, l2_normalise, vlad
from retrieval.methods.qe import alpha_expand
from retrieval.methods.superglobal import SuperGlobalConfig, superglobal_rerank
from retrieval.runtime import load_npz, read_json, write_json
from retrieval.search.exact import topk_neighbours
from retrieval.stages import lw as lw_stage
from retrieval.stages import qe as qe_stage
from retrieval.stages import superglobal as superglobal_stage
from retrieval.stages import whiten as whiten_stage
from retrieval.stages.aggregate import aggregate_vlad, backbone_global
from retrieval.stages.knn import nearest_neighbours
from retrieval.stages.lw import streamed_lw
from retrieval.stages.qe import streamed_adba, streamed_aqe
from retrieval.stages.ssp import search_file
from retrieval.stages.superglobal import superglobal_from_file
from retrieval.stages.whiten import apply_pca_whitening_stage, fit_pca_whitening_stage
from retrieval.stores import global_store
from retrieval.stores.global_store import (
    BlockReader,
    open_global,
    read_global,
    read_global_rows,
    write_global,
    write_neighbours,
)
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
    with h5py.File(tmp_path / "global.h5") as f:
        assert f.attrs["method"] == "vlad+whiten"
    # too few images for PCA-whitening: the identity, and the file says vlad (it said vlad+whiten: a new user's trial)
    np.savez(tmp_path / "whiten.npz", **identity_whitening(32, "too few images"))
    apply_pca_whitening_stage(tmp_path / "vlad.h5", tmp_path / "whiten.npz", tmp_path / "plain.h5", 0.5, "v")
    with h5py.File(tmp_path / "plain.h5") as f:
        assert f.attrs["method"] == "vlad" and f.attrs["dim"] == 32


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


def _db_file(path, n, d, seed=0):
    x = l2_normalise(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32))
    x[7] = 0.0  # an image without features
    write_global(path, x)
    return x


def _peak_bytes(fn):
    fn()  # once before measuring: modules imported on first use are not the data's memory
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_global_rows_are_read_in_the_order_asked_and_checked(tmp_path):
    x = _db_file(tmp_path / "db.h5", 50, 8)
    rows = np.array([[9, 3], [3, 49]])
    got = read_global_rows(tmp_path / "db.h5", rows)
    assert got.shape == (2, 2, 8)
    np.testing.assert_array_equal(got, x[rows])
    np.testing.assert_array_equal(read_global_rows(tmp_path / "db.h5", [1, 4]), x[[1, 4]])
    with pytest.raises(ValueError, match=r"db\.h5: row 50 asked of 50"):
        read_global_rows(tmp_path / "db.h5", [2, 50])
    bad = x.copy()
    bad[4, 0] = np.nan
    write_global(tmp_path / "bad.h5", bad)
    read_global_rows(tmp_path / "bad.h5", [3, 5])  # the NaN row is not read
    with pytest.raises(ValueError, match=r"bad\.h5: global descriptors contain NaN"):
        read_global_rows(tmp_path / "bad.h5", [4])


def test_the_block_reader_checks_blocks_marks_featureless_rows_and_counts_its_seconds(tmp_path):
    x = _db_file(tmp_path / "db.h5", 50, 8)  # row 7 all zero
    x[30] = 0.0
    write_global(tmp_path / "db.h5", x)
    with open_global(tmp_path / "db.h5") as f:
        read = BlockReader(tmp_path / "db.h5", f["descriptors"])
        np.testing.assert_array_equal(read(0, 20), x[:20])
        assert read.featureless.tolist() == [i == 7 for i in range(50)]  # row 30's block is not read yet
        np.testing.assert_array_equal(read(20, 50), x[20:])
        assert read.featureless.tolist() == [i in (7, 30) for i in range(50)]
        assert read.seconds > 0
        np.testing.assert_array_equal(read.rows(np.array([[49, 7]])), x[[[49, 7]]])
    bad = x.copy()
    bad[33, 2] = np.inf
    write_global(tmp_path / "bad.h5", bad)
    with open_global(tmp_path / "bad.h5") as f:
        read = BlockReader(tmp_path / "bad.h5", f["descriptors"])
        read(0, 30)
        with pytest.raises(ValueError, match=r"bad\.h5: global descriptors contain NaN or infinite"):
            read(30, 50)


def test_knn_names_a_database_file_with_non_finite_values(tmp_path):
    x = _db_file(tmp_path / "db.h5", 50, 8)
    write_global(tmp_path / "q.h5", x[:3])
    x[20, 1] = np.nan  # a NaN similarity sorts anywhere: the shortlist would be silently wrong
    write_global(tmp_path / "db.h5", x)
    with pytest.raises(ValueError, match=r"db\.h5: global descriptors contain NaN"):
        nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "nn.h5", 10, "v")
    assert not (tmp_path / "nn.h5").exists()


def test_superglobal_reads_only_the_shortlisted_rows(tmp_path):
    x = _db_file(tmp_path / "db.h5", 4000, 512)  # 8 MB
    q = l2_normalise(np.random.default_rng(1).normal(size=(5, 512)).astype(np.float32))
    ids, sims = topk_neighbours(q, x, 50)
    conf = SuperGlobalConfig(m=20, k=4, beta=0.15, query_pool="max")
    want = superglobal_rerank(q, x, ids, sims, conf)
    got, peak = _peak_bytes(lambda: superglobal_from_file(q, tmp_path / "db.h5", ids, sims, conf))
    assert got[2] > 0  # the seconds spent reading
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert (got[0][:, 20:] == ids[:, 20:]).all()  # beyond M the global order stays
    assert peak < 1_000_000  # at most 100 rows of 2 KB are read, not the 8 MB database


def _assert_same_ranking_up_to_rounding(ids, sims, want_ids, want_sims, atol):
    """Full rankings equal but for near-ties: the same similarity at every rank (to ``atol``), each row a permutation
    of the same images, and where the images differ, the one ranked there has the reference's similarity of that rank.
    The streamed search multiplies by numpy's BLAS, the reference by faiss's kernels, whose sums are rounded in
    another order on some CPUs (two pairs of images 1-2e-8 apart swapped on an AMD EPYC with AVX2; equal on AVX-512)."""
    np.testing.assert_allclose(sims, want_sims, atol=atol)
    for row in range(len(ids)):
        assert sorted(ids[row].tolist()) == sorted(want_ids[row].tolist())
        true = dict(zip(want_ids[row].tolist(), want_sims[row].tolist()))
        for r in np.flatnonzero(ids[row] != want_ids[row]):
            assert np.isclose(true[int(ids[row, r])], want_sims[row, r], rtol=0, atol=atol), (row, r)


def _assert_same_ids_up_to_rounding(ids, want_ids, want_sims, atol):
    """Full rankings ``ids`` equal to ``want_ids`` (similarities ``want_sims``) but for near-ties: each row a
    permutation of the same images, and where they differ the image ranked there has the reference's similarity of
    that rank (to ``atol``)."""
    _assert_same_ranking_up_to_rounding(
        ids,
        np.take_along_axis(want_sims, np.argsort(want_ids, 1), 1)[np.arange(len(ids))[:, None], ids],
        want_ids,
        want_sims,
        atol,
    )


def test_aqe_streamed_over_the_file_equals_the_in_memory_expansion(tmp_path, monkeypatch):
    x = _db_file(tmp_path / "db.h5", 3000, 256)  # 3 MB
    q = l2_normalise(np.random.default_rng(1).normal(size=(4, 256)).astype(np.float32))
    q[2] = 0.0  # a query without features
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 256 * 100)  # 100 rows at a time
    for k, alpha in ((3, 3.0), (0, 1.0)):
        qn = alpha_expand(q, x, k, alpha)
        want_ids, want_sims = topk_neighbours(qn, x, len(x))
        (ids, sims, seconds), peak = _peak_bytes(lambda: streamed_aqe(q, tmp_path / "db.h5", k, alpha))
        _assert_same_ranking_up_to_rounding(ids, sims, want_ids, want_sims, atol=1e-6)
        assert (ids[2, :-1] == np.delete(np.arange(len(x)), 7)).all()  # a featureless query: the database order
        assert ids[:, -1].tolist() == [7] * 4  # the featureless database image ranks last
        assert peak < 1_000_000  # blocks of 100 KB and the (4, 3000) ranking, not the 3 MB database
        # as deep as a knn.k shortlist: the full ranking's first 50 (it was the full ranking whatever knn.k said)
        top_ids, top_sims, _ = streamed_aqe(q, tmp_path / "db.h5", k, alpha, depth=50)
        assert top_ids.shape == top_sims.shape == (4, 50)
        np.testing.assert_array_equal(top_ids, ids[:, :50])
        np.testing.assert_allclose(top_sims, sims[:, :50], atol=1e-6)


def test_adba_augments_the_file_block_by_block_as_in_memory(tmp_path, monkeypatch):
    """Database augmentation streamed over the file equals ``alpha_expand`` with ``exclude_self`` on the database in
    memory: an exact duplicate (its self match tied with the copy's), an image without features (stays zero, weighs
    nothing), k = 0 (normalised only) and a k beyond the database; memory follows the blocks, not the database."""
    x = _db_file(tmp_path / "db.h5", 3000, 256)  # 3 MB; row 7 without features
    x[20] = x[10]  # a duplicate: rows 10 and 20 tie at similarity 1 in each other's search
    write_global(tmp_path / "db.h5", x)
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 256 * 100)  # 100 rows at a time
    for k, alpha in ((3, 3.0), (0, 1.0)):
        want = alpha_expand(x, x, k, alpha, exclude_self=True)
        seconds, peak = _peak_bytes(lambda: streamed_adba(tmp_path / "db.h5", tmp_path / "aug.h5", k, alpha))
        got = read_global(tmp_path / "aug.h5")
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert seconds > 0 and not got[7].any()
        assert peak < 1_000_000  # blocks of 100 KB and their neighbours' rows, not the 3 MB database
    small = x[:5]
    write_global(tmp_path / "small.h5", small)
    streamed_adba(tmp_path / "small.h5", tmp_path / "aug5.h5", 10, 3.0)  # k beyond the database: its 4 others
    np.testing.assert_allclose(
        read_global(tmp_path / "aug5.h5"), alpha_expand(small, small, 10, 3.0, exclude_self=True), atol=1e-6
    )


def test_lw_whitens_and_searches_the_database_in_blocks(tmp_path, monkeypatch):
    x = _db_file(tmp_path / "db.h5", 3000, 256)
    q = l2_normalise(np.random.default_rng(1).normal(size=(4, 256)).astype(np.float32))
    rng = np.random.default_rng(2)
    w = {
        "mean": rng.normal(size=256).astype(np.float32) * 0.01,
        "projection": np.linalg.qr(rng.normal(size=(256, 256)))[0].astype(np.float32),
        "eigenvalues": np.ones(256, np.float32),
    }
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 256 * 100)
    want_ids, want_sims = topk_neighbours(apply_whitening(q, w, power=0.0), apply_whitening(x, w, power=0.0), len(x))
    (ids, sims, reading, whitening), peak = _peak_bytes(lambda: streamed_lw(q, tmp_path / "db.h5", w))
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5)
    assert reading > 0 and whitening > 0
    assert peak < 1_300_000  # whitened blocks of 100 KB and the (4, 3000) ranking, not the 3 MB database
    top_ids, top_sims, _, _ = streamed_lw(q, tmp_path / "db.h5", w, depth=50)  # as deep as a knn.k shortlist
    np.testing.assert_array_equal(top_ids, ids[:, :50])
    np.testing.assert_allclose(top_sims, sims[:, :50], atol=1e-5)


def test_ssp_searches_its_query_sets_in_one_pass_over_the_file(tmp_path, monkeypatch):
    x = _db_file(tmp_path / "db.h5", 3000, 256)
    x[11] = 0.0
    write_global(tmp_path / "db.h5", x)
    rng = np.random.default_rng(3)
    runs = {n: l2_normalise(rng.normal(size=(m, 256)).astype(np.float32)) for n, m in (("ssp", 3), ("light", 5))}
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 256 * 100)
    for top in (len(x), 100):  # a full ranking (revisitop) and GLDv2's top 100
        (ranks, featureless), peak = _peak_bytes(lambda: search_file(runs, tmp_path / "db.h5", top))
        assert featureless == 2 and list(ranks) == ["ssp", "light"]
        for name, q in runs.items():
            want_ids, want_sims = topk_neighbours(q, x, top)
            # the full ranking's BLAS and faiss round two images 2e-8 apart to one float on the AMD EPYC (ties,
            # which the reference lists in database order): the same ranking up to rounding
            _assert_same_ranking_up_to_rounding(ranks[name][0], ranks[name][1], want_ids, want_sims, atol=1e-6)
        assert peak < 1_500_000  # blocks of 100 KB and the (8, 3000) rankings, not the 3 MB database


def test_adba_removes_its_augmented_database_when_the_search_fails(tmp_path, monkeypatch):
    """The augmented copy (the database's size on disk) is removed when the job fails after writing it, and a copy
    left by a killed attempt is removed before a new one is written."""
    _stage_inputs(tmp_path)
    (tmp_path / ".adba.db_augmented.h5").write_bytes(b"left by a killed attempt")
    written = []

    def failing_search(q, path, k, alpha, depth):
        written.append(read_global(path).shape)  # the augmented database, written in place of the stale bytes
        raise RuntimeError("search failed")

    monkeypatch.setattr(qe_stage, "streamed_aqe", failing_search)
    files = (str(tmp_path / "query.h5"), str(tmp_path / "db.h5"), str(tmp_path / "knn.h5"))
    with pytest.raises(RuntimeError, match="search failed"):
        qe_stage.evaluate_qe_stage(
            _ctx(tmp_path, "adba"), *files, "adba", {"k": 3, "alpha": 3.0}, {"k": 4, "alpha": 3.0}
        )
    assert written == [(400, 64)] and not list(tmp_path.glob(".*"))


def test_a_database_of_another_dimension_is_named(tmp_path):
    _db_file(tmp_path / "db.h5", 30, 16)
    q = np.ones((2, 8), np.float32)
    ids, sims = np.tile(np.arange(30), (2, 1)), np.zeros((2, 30), np.float32)
    calls = (
        lambda: streamed_aqe(q, tmp_path / "db.h5", 3, 3.0),
        lambda: streamed_lw(q, tmp_path / "db.h5", {"mean": np.zeros(8, np.float32), "projection": np.eye(8)}),
        lambda: superglobal_from_file(q, tmp_path / "db.h5", ids, sims, SuperGlobalConfig()),
        lambda: search_file({"ssp": q}, tmp_path / "db.h5", 30),
    )
    for call in calls:
        with pytest.raises(ValueError, match=r"db\.h5: database descriptors of dimension 16, queries of dimension 8"):
            call()


def _stage_inputs(tmp_path, n_db=400, n_q=3, d=64):
    """A small dataset's global files, lists (no ground truth) and full global ranking, as the evaluation rules
    hand them to a stage."""
    x = _db_file(tmp_path / "db.h5", n_db, d)
    q = l2_normalise(np.random.default_rng(5).normal(size=(n_q, d)).astype(np.float32))
    write_global(tmp_path / "query.h5", q)
    ids, sims = topk_neighbours(q, x, n_db)
    write_neighbours(tmp_path / "knn.h5", ids, sims, featureless=(featureless_rows(q), featureless_rows(x)))
    lists = {
        "query": [{"name": f"q{i}", "path": f"q{i}.jpg"} for i in range(n_q)],
        "db": [{"name": f"d{i}", "path": f"d{i}.jpg"} for i in range(n_db)],
        "crop_queries": False,
    }
    write_json(tmp_path / "lists.json", lists)
    write_json(tmp_path / "gnd.json", None)
    return x, q, ids, sims


def _ctx(tmp_path, method):
    return evaluation_context(tmp_path, method)


@pytest.mark.parametrize("method", ["aqe", "adba", "lw", "superglobal"])
def test_the_evaluation_stages_never_load_the_whole_database(tmp_path, monkeypatch, caplog, method):
    """The stages themselves (not only their helpers) read the database file in blocks or rows: read_global, which
    loads a whole file, is refused for the database while the stage runs; the ranking is the in-memory one."""
    x, q, ids, sims = _stage_inputs(tmp_path)
    db = str(tmp_path / "db.h5")
    module = {"aqe": qe_stage, "adba": qe_stage, "lw": lw_stage, "superglobal": superglobal_stage}[method]
    real = module.read_global

    def read_global(path):
        assert str(path) != db, f"{method} loaded the whole database"
        return real(path)

    monkeypatch.setattr(module, "read_global", read_global)
    ctx, files = _ctx(tmp_path, method), (str(tmp_path / "query.h5"), db, str(tmp_path / "knn.h5"))
    if method == "aqe":
        qe_stage.evaluate_qe_stage(ctx, *files, "aqe", {"k": 3, "alpha": 3.0}, None)
        want, want_sims = topk_neighbours(alpha_expand(q, x, 3, 3.0), x, len(x))
    elif method == "adba":
        qe_stage.evaluate_qe_stage(ctx, *files, "adba", {"k": 3, "alpha": 3.0}, {"k": 4, "alpha": 3.0})
        xa = alpha_expand(x, x, 4, 3.0, exclude_self=True)
        want, want_sims = topk_neighbours(alpha_expand(q, xa, 3, 3.0), xa, len(x))
        assert not list(tmp_path.glob(".*"))  # no augmented database is left beside the results
        assert read_json(tmp_path / "adba.json")["timing"]["offline_seconds"] > 0
        assert read_json(tmp_path / "adba.json")["k_applied"] == {"aqe": 3, "adba": 4}
        # a k beyond the database: all of it, recorded (the configuration's k alone did not say so)
        n = len(x)
        every = dataclasses.replace(
            ctx, out_json=tmp_path / "all.json", out_ranking=tmp_path / "all.h5", out_csv=tmp_path / "all.csv"
        )
        qe_stage.evaluate_qe_stage(every, *files, "adba", {"k": 10 * n, "alpha": 3.0}, {"k": 10 * n, "alpha": 3.0})
        assert read_json(tmp_path / "all.json")["k_applied"] == {"aqe": n, "adba": n - 1}
    elif method == "lw":
        w = {
            "mean": np.full(64, 0.01, np.float32),
            "projection": np.eye(64, dtype=np.float32)[::-1].copy(),
            "eigenvalues": np.ones(64, np.float32),
        }
        np.savez(tmp_path / "lw.npz", **w)
        lw_stage.evaluate_lw_stage(ctx, files[0], db, str(tmp_path / "lw.npz"), files[2])
        want, want_sims = topk_neighbours(apply_whitening(q, w, power=0.0), apply_whitening(x, w, power=0.0), len(x))
    else:  # VLAD without PCA-whitening (its file says not applied): query_pool auto takes the mean
        np.savez(tmp_path / "whiten.npz", **identity_whitening(64, "too few images"))
        superglobal_stage.evaluate_superglobal_stage(
            ctx, *files, {"m": 20, "k": 4, "beta": 0.15, "query_pool": "auto"}, str(tmp_path / "whiten.npz")
        )
        want, want_sims = (
            superglobal_rerank(q, x, ids, sims, SuperGlobalConfig(m=20, k=4, beta=0.15, query_pool="mean"))[0],
            None,
        )
        official = superglobal_rerank(q, x, ids, sims, SuperGlobalConfig(m=20, k=4, beta=0.15, query_pool="max"))[0]
        assert not np.array_equal(want, official)  # the check below tells the poolings apart
    with h5py.File(tmp_path / f"{method}_ranking.h5") as f:
        if want_sims is None:  # re-ranked from the same shortlist: the same order
            np.testing.assert_array_equal(f["ranks"][:], want)
        else:  # the stage's BLAS against the reference's faiss: the same ranking up to rounding (near-ties)
            _assert_same_ids_up_to_rounding(f["ranks"][:], want, want_sims, atol=1e-6)
    result = read_json(tmp_path / f"{method}.json")
    if method == "superglobal":
        assert result["query_pool"] == "mean" and result["num_rerank_applied"] == 20  # superglobal.m, recorded
        assert result["k_applied"] == {"superglobal": 4}  # as aqe and adba record theirs
        # a k beyond the m re-ranked: each refined with the other m - 1, recorded and warned (helper-97's trial)
        with caplog.at_level("WARNING"):
            superglobal_stage.evaluate_superglobal_stage(ctx, *files, {"m": 5, "k": 50, "beta": 0.15}, None)
        assert read_json(tmp_path / "superglobal.json")["k_applied"] == {"superglobal": 4}
        assert "superglobal.k 50 is at least the 5 images re-ranked (superglobal.m, or the shortlist" in caplog.text
        # a backbone's or imported descriptors (no whitening file): the official max
        superglobal_stage.evaluate_superglobal_stage(ctx, *files, {"m": 20, "k": 4, "beta": 0.15, "query_pool": "auto"})
        with h5py.File(tmp_path / f"{method}_ranking.h5") as f:
            np.testing.assert_array_equal(f["ranks"][:], official)
        assert read_json(tmp_path / f"{method}.json")["query_pool"] == "max"
    assert result["timing"]["reads_seconds"] > 0 and result["n_db"] == len(x)


def test_the_descriptor_sweep_names_a_truncated_shortlist(tmp_path):
    """It took the shortlist's width for the database size: a knn.k shortlist failed deep in the metrics with
    "indices outside 0..k-1" (a docstring pass found it)."""
    from retrieval.benchmarks.descriptor_sweep import descriptor_sweep_stage  # noqa: PLC0415

    ids = np.tile(np.arange(5), (2, 1))
    write_neighbours(tmp_path / "knn.h5", ids, np.ones((2, 5), np.float32), n_db=12)
    write_json(tmp_path / "gnd.json", {"gnd": [{"easy": [1], "hard": [], "junk": []}] * 2})
    with pytest.raises(ValueError, match=r"knn\.h5: a shortlist of 5 of 12 images; .* need the full ranking"):
        descriptor_sweep_stage(
            {}, {}, "q.h5", "db.h5", tmp_path / "knn.h5", tmp_path / "gnd.json", "set", {}, [], [], 8, 4, "cpu",
            tmp_path / "o.json", tmp_path / "o.png", tmp_path / "o.md", {},
        )  # fmt: skip

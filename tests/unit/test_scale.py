"""Large-database pieces: streamed exact search equals one-shot search, recall, and the simulated database."""

import h5py
import numpy as np
import pytest

from retrieval.benchmarks.scale import recall_at_k, simulate, source_recall
from retrieval.features.vlad import l2_normalise
from retrieval.search.exact import stream_topk, topk_neighbours
from retrieval.search.ivfpq import ivfpq_search
from retrieval.stages.knn import nearest_neighbours
from retrieval.stores import global_store
from retrieval.stores.global_store import block_rows, read_neighbours, write_global


def test_streamed_search_equals_one_shot_search():
    rng = np.random.default_rng(0)
    db = l2_normalise(rng.normal(size=(1000, 16))).astype(np.float32)
    q = l2_normalise(rng.normal(size=(7, 16))).astype(np.float32)
    ids, sims = stream_topk(q, lambda s, e: db[s:e], len(db), 25, block=97)
    want_ids, want_sims = topk_neighbours(q, db, 25)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(sims, want_sims, rtol=1e-6)


def test_blocks_are_capped_in_bytes_whatever_the_dimension(monkeypatch):
    # 100,000 rows of the 8192-d VLAD were 3.3 GB of float32 per block (a new user's scale run peaked at 14.4 GB)
    assert block_rows(100_000, 1024) == 65_536 and block_rows(100_000, 8192) == 8_192
    assert block_rows(500, 8192) == 500 and block_rows(100_000, 10**9) == 1
    monkeypatch.setattr(global_store, "BLOCK_BYTES", 4 * 32 * 100)  # 100 rows of 32 float32 values
    rng = np.random.default_rng(3)
    db = l2_normalise(rng.normal(size=(1000, 32))).astype(np.float32)
    q = l2_normalise(db[:5] + 0.2 * rng.normal(size=(5, 32))).astype(np.float32)
    sizes = []

    def read(s, e):
        sizes.append(e - s)
        return db[s:e]

    for k in (20, len(db)):  # a shortlist and the full ranking
        sizes.clear()
        ids, sims = stream_topk(q, read, len(db), k, block=100_000)
        assert max(sizes) == 100 and sum(sizes) == len(db)
        want_ids, want_sims = topk_neighbours(q, db, k)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(sims, want_sims, rtol=1e-6, atol=1e-6)
    sizes.clear()
    cfg = {"nlist": 4, "m": 4, "nbits": 4, "nprobe": 4, "train": 400}
    ids, _ = ivfpq_search(q, read, len(db), 32, cfg, 10, block=100_000, seed=0)
    assert max(sizes) == 100 and ids.shape == (5, 10) and (ids >= 0).all()


def test_recall_at_k():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert recall_at_k(approx, exact) == (0.5 + 1.0) / 2
    # with 5 real images, rows 9 and 4 are copies of the same one: the source is found
    assert source_recall(np.array([[9, 0]]), np.array([[4, 5]]), 5) == 1.0
    assert source_recall(np.array([[1, 2]]), np.array([[4, 5]]), 5) == 0.0


def test_simulated_database_resamples_real_rows(tmp_path):
    rng = np.random.default_rng(1)
    real = l2_normalise(rng.normal(size=(5, 32))).astype(np.float32)
    codes = rng.integers(0, 256, size=(5, 6, 4), dtype=np.uint8)
    counts = np.array([6, 3, 6, 0, 5], np.int32)
    codes[1, 3:] = codes[4, 5:] = 0
    codes[3] = 0
    simulate(tmp_path / "g.h5", tmp_path / "c.h5", real, codes, counts, 23, noise=0.1, bit_flip=0.1, block=4, seed=0)
    with h5py.File(tmp_path / "g.h5", "r") as g, h5py.File(tmp_path / "c.h5", "r") as c:
        x = g["descriptors"][:].astype(np.float32)
        sim = x @ real.T
        assert (sim.argmax(1) == np.arange(23) % 5).all()  # each row stays nearest to the image it resamples
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=2e-3)
        got = c["codes"][:]
        np.testing.assert_array_equal(c["count"][:], counts[np.arange(23) % 5])
        assert not got[np.arange(23) % 5 == 3].any() and not got[np.arange(23) % 5 == 1][:, 3:].any()  # padding stays 0
        flipped = np.unpackbits(got[np.arange(23) % 5 == 0] ^ codes[0][None]).mean()
        assert 0.05 < flipped < 0.15  # about bit_flip of the valid bits
    # the same database whatever the block: the noise and the flips are drawn in order from their own streams
    simulate(tmp_path / "g2.h5", tmp_path / "c2.h5", real, codes, counts, 23, noise=0.1, bit_flip=0.1, block=7, seed=0)
    for name in ("g", "c"):
        with h5py.File(tmp_path / f"{name}.h5", "r") as a, h5py.File(tmp_path / f"{name}2.h5", "r") as b:
            for key in a:
                np.testing.assert_array_equal(a[key][:], b[key][:])


def test_knn_stage_streams_exactly_and_offers_ivfpq(tmp_path, caplog):

    rng = np.random.default_rng(2)
    db = l2_normalise(rng.normal(size=(3000, 16))).astype(np.float32)
    q = l2_normalise(db[:8] + 0.3 * rng.normal(size=(8, 16))).astype(np.float32)
    write_global(tmp_path / "db.h5", db)
    write_global(tmp_path / "q.h5", q)
    nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "one.h5", 0, "v", block=10_000)
    nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "blocks.h5", 0, "v", block=257)
    a, sa, attrs = read_neighbours(tmp_path / "one.h5")
    b, sb, _ = read_neighbours(tmp_path / "blocks.h5")
    np.testing.assert_array_equal(a, b)  # full rankings, identical whatever the block size
    assert a.shape == (8, 3000) and attrs["search"] == "exact" and attrs["search_seconds"] >= 0
    cfg = {"nlist": 16, "m": 8, "nbits": 8, "nprobe": 16, "train": 3000}
    caplog.clear()
    nearest_neighbours(
        tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "ivf.h5", 20, "v", search="ivfpq", block=1000, ivfpq=cfg
    )
    # 3,000 vectors for 256 codewords is below 39 per centroid: said once (the job planned twice, and said it twice)
    assert sum("poorly trained" in r.getMessage() for r in caplog.records) == 1
    c, sc, cattrs = read_neighbours(tmp_path / "ivf.h5")
    assert c.shape == (8, 20) and "ivfpq" in cattrs
    assert recall_at_k(c[:, :10], a[:, :10]) >= 0.5
    np.testing.assert_allclose(sc, np.take_along_axis(q @ db.T, c, 1), rtol=1e-5)  # exact scores of the returned ids
    with pytest.raises(ValueError, match="knn.k > 0"):
        nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "x.h5", 0, "v", search="ivfpq", ivfpq=cfg)


def test_a_knn_k_above_the_database_stores_the_full_ranking_and_says_so(tmp_path, caplog):
    rng = np.random.default_rng(3)
    write_global(tmp_path / "db.h5", l2_normalise(rng.normal(size=(40, 8))).astype(np.float32))
    write_global(tmp_path / "q.h5", l2_normalise(rng.normal(size=(3, 8))).astype(np.float32))
    nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "full.h5", 0, "v")
    with caplog.at_level("WARNING"):
        nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "k.h5", 1000, "v")
    assert "knn.k 1000 is at least the 40 database images" in caplog.text
    full, k = read_neighbours(tmp_path / "full.h5"), read_neighbours(tmp_path / "k.h5")
    np.testing.assert_array_equal(full[0], k[0])
    assert k[2]["k"] == 40
    caplog.clear()
    with caplog.at_level("WARNING"):
        nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "s.h5", 39, "v")
    assert "at least" not in caplog.text


def test_full_ranking_is_one_sort_of_every_similarity_whatever_the_block():
    rng = np.random.default_rng(1)
    db = l2_normalise(rng.normal(size=(500, 8))).astype(np.float32)
    db[7] = db[3]  # a tie: database order decides
    q = l2_normalise(rng.normal(size=(5, 8))).astype(np.float32)
    want = np.argsort(-(q @ db.T), axis=1, kind="stable")
    for block in (41, 500, 10_000):
        ids, sims = stream_topk(q, lambda s, e: db[s:e], len(db), len(db), block)
        np.testing.assert_array_equal(ids, want)
        assert (np.diff(sims, axis=1) <= 0).all()
        pos = np.argsort(ids, axis=1)
        assert (pos[:, 3] < pos[:, 7]).all()
    # the top of the full ranking is the shortlist path's answer
    top, _ = stream_topk(q, lambda s, e: db[s:e], len(db), 20, 97)
    np.testing.assert_array_equal(top[:, :5], want[:, :5])


def test_in_memory_neighbours_list_tied_copies_in_database_order():
    # five identical copies among other images: faiss's heap gave them in its own order, so the in-memory top k
    # (AMES's training pairs, aqe/adba) and the streamed search (a collection's shortlist) could disagree
    rng = np.random.default_rng(5)
    db = l2_normalise(rng.normal(size=(200, 16))).astype(np.float32)
    copies = [3, 41, 77, 120, 199]
    db[copies] = db[3]
    q = np.concatenate([db[[3]], l2_normalise(db[[3]] + 0.01 * rng.normal(size=(1, 16)))]).astype(np.float32)
    for k in (5, 12):
        ids, sims = topk_neighbours(q, db, k)
        np.testing.assert_array_equal(ids[:, :5], [copies, copies])
        assert (sims[:, :5] == sims[:, :1]).all() and (np.diff(sims, axis=1) <= 0).all()
        s_ids, _ = stream_topk(q, lambda s, e: db[s:e], len(db), k, block=64)
        np.testing.assert_array_equal(ids, s_ids)
    ids, _ = topk_neighbours(db, db, 6, exclude_self=True)  # database against itself: a copy's other copies first
    for c in copies:
        np.testing.assert_array_equal(ids[c, :4], [x for x in copies if x != c])

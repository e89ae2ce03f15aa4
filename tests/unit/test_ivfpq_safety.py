"""Compressed search is safe: IVF-PQ never stores an id that is not a database image, nlist follows the database
size, a database too small to train it falls back to exact search (logged), an impossible explicit setting is
refused with its numbers, and the neighbours format refuses ids outside the database."""

import json
import logging

import h5py
import numpy as np
import pytest

from retrieval.features.vlad import l2_normalise
from retrieval.methods.ames.rerank import lookup_logits, needed_pairs, protocol_shortlists, rerank
from retrieval.search.ivfpq import ivfpq_search, plan_ivfpq
from retrieval.stages.knn import nearest_neighbours
from retrieval.stores.global_store import read_neighbours, write_global, write_neighbours

AUTO = {"nlist": "auto", "m": 8, "nbits": 8, "nprobe": 16, "train": 50000}


def _data(tmp_path, n_db, d=16, n_q=6, seed=0):
    rng = np.random.default_rng(seed)
    db = l2_normalise(rng.normal(size=(n_db, d))).astype(np.float32)
    q = l2_normalise(db[:n_q] + 0.3 * rng.normal(size=(n_q, d))).astype(np.float32)
    write_global(tmp_path / "db.h5", db)
    write_global(tmp_path / "q.h5", q)
    return q, db


def test_issue_case_400_images_nlist_64_nprobe_1_gives_only_database_ids(tmp_path):
    """The reported case: 400 images, nlist 64, nprobe 1, k 100 gave 84-97 ids of -1 per query."""
    q, db = _data(tmp_path, 400)
    cfg = {"nlist": 64, "m": 8, "nbits": 4, "nprobe": 1, "train": 400}
    nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "ivf.h5", 100, "v", search="ivfpq", ivfpq=cfg)
    ids, sims, attrs = read_neighbours(tmp_path / "ivf.h5")
    assert ids.shape == (6, 100) and attrs["search"] == "ivfpq"
    assert ids.min() >= 0 and ids.max() < 400
    assert all(len(np.unique(r)) == 100 for r in ids)  # 100 distinct database images per query
    np.testing.assert_allclose(sims, np.take_along_axis(q @ db.T, ids, 1), rtol=1e-5)
    assert np.isfinite(sims).all()
    # best first by the stored exact similarity (faiss's order is the PQ-approximate one: the shortlist's scores were
    # not descending, which the re-rankers' fusion and tie-breaks read as the global order)
    assert (np.diff(sims, axis=1) <= 0).all()
    stats = json.loads(attrs["ivfpq"])
    assert stats["widened_queries"] == 6 and stats["max_nprobe"] > 1


def test_a_depth_above_the_database_is_warned_of_by_the_key_it_comes_from(tmp_path, caplog):
    """knn.k above the database is warned of, naming knn.k; a search of new photos (search.k, or sv.num_rerank's 100
    under search.rerank: sv) named knn.k, which the user never set (a new user's trial): there it is information."""
    _data(tmp_path, 30)
    caplog.set_level(logging.INFO)
    nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "a.h5", 100, "v")
    assert "knn.k 100 is at least the 30 database images" in caplog.text
    caplog.clear()
    nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "b.h5", 100, "v", k_key=None)
    assert "knn.k" not in caplog.text and "WARNING" not in caplog.text
    assert "a depth of 100: all 30 collection images are ranked" in caplog.text
    assert read_neighbours(tmp_path / "a.h5")[0].tolist() == read_neighbours(tmp_path / "b.h5")[0].tolist()


def test_auto_nlist_follows_the_database_and_falls_back_on_small_ones(tmp_path, caplog):
    assert plan_ivfpq(1_000_000, 1024, {**AUTO, "m": 32}) == {
        "nlist": 4000,
        "m": 32,
        "nbits": 8,
        "nprobe": 16,
        "n_train": 156000,
    }  # 39 x 4000 training vectors
    assert plan_ivfpq(30_000, 16, AUTO)["nlist"] == 693  # 4 x sqrt(30000)
    fb = plan_ivfpq(3_000, 16, AUTO)
    assert (
        set(fb) == {"fallback"}
        and "9984 training vectors" in fb["fallback"]
        and "nlist 219" in fb["fallback"]
        and "3000" in fb["fallback"]
    )
    _data(tmp_path, 3000)
    with caplog.at_level(logging.WARNING):
        nearest_neighbours(
            tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "nn.h5", 50, "v", search="ivfpq", ivfpq=AUTO
        )
    nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "exact.h5", 50, "v")
    ids, sims, attrs = read_neighbours(tmp_path / "nn.h5")
    want, want_sims, _ = read_neighbours(tmp_path / "exact.h5")
    np.testing.assert_array_equal(ids, want)  # the fallback is exact search
    assert attrs["search"] == "exact" and "exact search instead" in attrs["ivfpq_fallback"]
    assert "exact search instead" in caplog.text


def test_auto_nlist_trains_on_a_large_enough_database(tmp_path):
    q, db = _data(tmp_path, 26_000, d=8)
    cfg = {"nlist": "auto", "m": 4, "nbits": 6, "nprobe": 4, "train": 1000}
    nearest_neighbours(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "ivf.h5", 30, "v", search="ivfpq", ivfpq=cfg)
    ids, _, attrs = read_neighbours(tmp_path / "ivf.h5")
    stats = json.loads(attrs["ivfpq"])
    assert attrs["search"] == "ivfpq" and stats["nlist"] == 645 and stats["n_train"] == 39 * 645
    assert ids.min() >= 0 and ids.max() < len(db)


@pytest.mark.parametrize(
    "cfg, n_db, d, pattern",
    [
        (
            {"nlist": 1024, "m": 8, "nbits": 8, "nprobe": 16, "train": 50000},
            600,
            16,
            r"nlist 1024 lists .* from 600 training vectors",
        ),
        ({"nlist": 16, "m": 8, "nbits": 8, "nprobe": 16, "train": 200}, 600, 16, r"256 codewords \(8 bits\) from 200"),
        ({"nlist": 16, "m": 5, "nbits": 4, "nprobe": 4, "train": 600}, 600, 16, r"m = 5 does not divide .* 16"),
    ],
)
def test_impossible_explicit_settings_are_refused_with_the_numbers(cfg, n_db, d, pattern):
    with pytest.raises(ValueError, match=pattern):
        plan_ivfpq(n_db, d, cfg)
    with pytest.raises(ValueError, match=pattern):
        ivfpq_search(
            np.zeros((1, d), np.float32), lambda s, e: np.zeros((e - s, d), np.float32), n_db, d, cfg, 10, 1000, 0
        )
    # the scale benchmark's own keys are named, with advice its schema accepts (it has no nlist: auto)
    with pytest.raises(ValueError, match=r"^benchmark\.scale\.ivfpq") as err:
        plan_ivfpq(n_db, d, cfg, "benchmark.scale.ivfpq")
    assert "knn." not in str(err.value) and "nlist: auto" not in str(err.value)


@pytest.mark.parametrize(
    "cfg, n_db, way, not_way",
    [
        # the codewords are the limit, not the 32 lists: lower nbits, not nlist (it advised lowering nlist)
        ({"nlist": 32, "nbits": 8, "train": 100}, 5000, r"lower k\.nbits to at most 6; or raise k\.train", "nlist to"),
        # the database is the limit: raising train cannot help (it advised it)
        ({"nlist": 2000, "nbits": 4, "train": 50000}, 1000, r"lower k\.nlist to at most 1000", "raise"),
    ],
)
def test_an_untrainable_setting_names_the_way_out_that_helps(cfg, n_db, way, not_way):
    with pytest.raises(ValueError, match=way) as err:
        plan_ivfpq(n_db, 16, {"m": 8, "nprobe": 4, **cfg}, "k")
    assert not_way not in str(err.value)


def test_neighbour_files_hold_only_database_ids(tmp_path):
    ids = np.array([[0, 3, -1]], np.int32)
    with pytest.raises(ValueError, match="-1 is not a database image"):
        write_neighbours(tmp_path / "a.h5", ids, np.zeros(ids.shape, np.float32), n_db=4)
    with pytest.raises(ValueError, match="id 4 is beyond the database's 4"):
        write_neighbours(tmp_path / "a.h5", np.array([[0, 4]]), np.zeros((1, 2), np.float32), n_db=4)
    write_neighbours(tmp_path / "a.h5", np.array([[0, 3]]), np.zeros((1, 2), np.float32), n_db=4)
    with h5py.File(tmp_path / "a.h5", "r+") as f:  # a file written elsewhere with faiss's -1 padding
        f["ids"][0, 1] = -1
    with pytest.raises(ValueError, match=r"a\.h5: neighbour id -1"):
        read_neighbours(tmp_path / "a.h5")


def test_ames_reranking_of_a_shortlist_narrower_than_num_rerank():
    """AMES's pair cache, lookup and fusion clamp num_rerank to the shortlist: 12 ids re-ranked for num_rerank 30."""

    rng = np.random.default_rng(0)
    ids = np.stack([rng.permutation(40)[:12] for _ in range(3)]).astype(np.int64)
    sims = -np.sort(-rng.random((3, 12)), axis=1).astype(np.float32)
    shortlists = protocol_shortlists(ids, None, "none")
    pairs = needed_pairs(shortlists, 30)
    assert [len(p) for p in pairs] == [12, 12, 12]
    logits = [rng.normal(size=len(p)).astype(np.float32) for p in pairs]
    got = lookup_logits(pairs, logits, ids, 30)
    assert got.shape == (3, 12)
    out = rerank(ids, sims, got, 0.0, 1.0, 30)
    want = np.take_along_axis(ids, np.argsort(-got, axis=1, kind="stable"), 1)
    np.testing.assert_array_equal(out, want)  # every one of the 12 re-ranked by its logit, none invented

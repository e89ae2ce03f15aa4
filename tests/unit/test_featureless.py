"""No features is no match (issue 14, item 2): images without descriptors rank after every image with features."""

import numpy as np
import pytest

from retrieval.evaluation.metrics import evaluate_gldv2, evaluate_rankings
from retrieval.evaluation.results import retrieved_nothing
from retrieval.featureless import drop_self, featureless_rows, rank_featureless_last, search_featured
from retrieval.features.vlad import apply_whitening, fit_pca_whitening, l2_normalise, vlad
from retrieval.methods.ames.rerank import fused_score, rerank
from retrieval.methods.qe import alpha_expand
from retrieval.search.exact import stream_topk, topk_neighbours


def _data(seed=0, n_db=40, n_q=6, d=16):
    rng = np.random.default_rng(seed)
    db = l2_normalise(rng.normal(size=(n_db, d))).astype(np.float32)
    q = l2_normalise(rng.normal(size=(n_q, d))).astype(np.float32)
    return q, db


def _with_featureless(q, db, db_rows=(3, 17, 29), q_rows=(2,)):
    db, q = db.copy(), q.copy()
    db[list(db_rows)] = 0.0
    q[list(q_rows)] = 0.0
    return q, db


def _check(ids, sims, q_none, db_none):
    featured = np.flatnonzero(~db_none)
    for r in range(len(ids)):
        row = ids[r]
        if q_none[r]:
            np.testing.assert_array_equal(row, np.concatenate([featured, np.flatnonzero(db_none)])[: len(row)])
            assert np.isneginf(sims[r]).all()
            continue
        flag = db_none[row]
        n_feat = (~flag).sum()
        assert not flag[:n_feat].any() and flag[n_feat:].all()  # every image without features after every one with
        np.testing.assert_array_equal(row[n_feat:], np.flatnonzero(db_none)[: len(row) - n_feat])  # database order
        assert np.isneginf(sims[r, n_feat:]).all() and np.isfinite(sims[r, :n_feat]).all()


def test_zero_descriptors_give_the_zero_vector_and_whitening_keeps_it_zero():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(8, 16)).astype(np.float32)
    v = vlad(np.zeros((0, 16), np.float32), c)
    assert not v.any()
    train = np.stack([vlad(rng.normal(size=(30, 16)).astype(np.float32), c) for _ in range(50)])
    w = fit_pca_whitening(train, 20)
    x = np.stack([v, v, train[0]])
    y = apply_whitening(x, w, 0.5)
    assert not y[:2].any() and np.isclose(np.linalg.norm(y[2]), 1.0)
    assert featureless_rows(y).tolist() == [True, True, False]
    # before: the two featureless images became one shared vector, an exact match of each other (score 1.0)
    centred = l2_normalise((x[:2] - w["mean"]) @ w["projection"].T)
    assert np.isclose(centred[0] @ centred[1], 1.0)


@pytest.mark.parametrize("k", [40, 10, 38])
def test_exact_search_ranks_featureless_last_in_database_order(k):
    q, db = _data()
    db = np.abs(db)  # all in the positive orthant ...
    q, db = _with_featureless(q, db)
    qn, dn = featureless_rows(q), featureless_rows(db)
    # ... and a query opposite to them: similarities all negative, where a zero vector (0.0) would beat them all
    q[0] = -l2_normalise(np.ones(db.shape[1], np.float32))
    for block in (7, 1000):
        ids, sims = stream_topk(q, lambda s, e: db[s:e], len(db), k, block)
        assert ids.shape == (6, k)
        _check(ids, sims, qn, dn)
        assert (sims[0, : 37 if k > 37 else k] < 0).all()
    ids2, sims2 = topk_neighbours(q, db, k)
    _check(ids2, sims2, qn, dn)
    # the featured part equals the search over the featured images alone
    sub_ids, _ = topk_neighbours(q[[0, 1]], db[~dn], min(k, 37))
    np.testing.assert_array_equal(ids2[[0, 1], : min(k, 37)], np.flatnonzero(~dn)[sub_ids])


def test_without_featureless_rows_nothing_changes():
    q, db = _data(1)
    ids, sims = stream_topk(q, lambda s, e: db[s:e], len(db), len(db), 9)
    np.testing.assert_array_equal(ids, np.argsort(-(q @ db.T), axis=1, kind="stable"))


def test_self_search_excludes_self_for_rows_with_and_without_features():
    _, db = _with_featureless(*_data(2), q_rows=())
    dn = featureless_rows(db)
    ids, sims = topk_neighbours(db, db, 39, exclude_self=True)
    assert ids.shape == (40, 39)
    assert (ids != np.arange(40)[:, None]).all()
    for r in np.flatnonzero(~dn):
        assert not dn[ids[r, :36]].any() and dn[ids[r, 36:]].all()
    for r in np.flatnonzero(dn):
        assert np.isneginf(sims[r]).all()


def test_query_expansion_keeps_a_featureless_query_featureless():
    q, db = _with_featureless(*_data(3))
    for alpha in (0.0, 3.0):
        e = alpha_expand(q, db, 5, alpha)
        assert not e[2].any() and np.isfinite(e).all()
        assert featureless_rows(e).tolist() == featureless_rows(q).tolist()


def test_ames_fusion_keeps_no_match_last_for_every_lambda():
    g = np.array([[0.9, -np.inf, 0.1, -np.inf]], np.float32)
    logit = np.array([[-3.0, 50.0, 1.0, 40.0]], np.float32)
    for lam in (0.0, 0.5, 1.0):
        s = fused_score(g, logit, lam, 0.5)
        assert np.isneginf(s[0, [1, 3]]).all() and np.isfinite(s[0, [0, 2]]).all()
        out = rerank(np.array([[5, 7, 8, 9]]), g, logit, lam, 0.5, 4)
        assert out[0, 2:].tolist() == [7, 9]


def test_rank_featureless_last_is_the_final_guard_of_any_ranking():
    db_none = np.array([False, True, False, False, True, False])
    q_none = np.array([False, True])
    ids = np.array([[4, 5, 1, 0, 2, 3], [0, 1, 2, 3, 4, 5]])  # a re-ranker put 4 first
    scores = np.arange(6, 0, -1, dtype=np.float32)[None].repeat(2, 0)
    out_i, out_s = rank_featureless_last(ids, scores, q_none, db_none)
    assert out_i.tolist() == [[5, 0, 2, 3, 1, 4], [0, 2, 3, 5, 1, 4]]
    assert (
        out_s[0].tolist()[:4] == [5.0, 3.0, 2.0, 1.0]
        and np.isneginf(out_s[0, 4:]).all()
        and np.isneginf(out_s[1]).all()
    )
    # a shortlist shorter than the featured images is completed in database order, then the featureless
    i2, _ = search_featured(np.zeros((1, 3), np.float32), np.eye(3, dtype=np.float32), 3, lambda a, b, k: (None, None))
    assert i2.tolist() == [[0, 1, 2]]


def test_a_query_without_features_scores_ap_zero_not_by_its_database_order():
    """A query without features ranks the database in its order (rank_featureless_last); its metrics must not depend
    on that order: a trial's missing query whose positive happened to sort first scored AP 1.0. It now scores AP 0
    and P@k 0 wherever it has positives (as GLDv2's metric scores a query without predictions), counted in the means;
    a query without positives stays None; without the flag nothing changes."""
    n_db = 5
    ranks = np.tile(np.arange(n_db), (3, 1))  # database order: every query's positive (image 0) first
    gnd = [{"easy": [0], "hard": [], "junk": []}] * 2 + [{"easy": [], "hard": [], "junk": [0]}]
    lists = {"query": [{"name": "jpg/a.jpg"}, {"name": "queries/missing.jpg"}, {"name": "jpg/c.jpg"}]}
    nothing = retrieved_nothing(lists, {"queries_without_features": ["queries/missing.jpg", "jpg/c.jpg"]})
    assert nothing.tolist() == [False, True, True]
    assert retrieved_nothing(lists, {"queries_without_features": []}) is None
    lucky = evaluate_rankings(ranks, gnd, n_db, (1,))
    fair = evaluate_rankings(ranks, gnd, n_db, (1,), nothing)
    assert lucky["per_query_ap"]["M"] == [1.0, 1.0, None] and lucky["mAP"]["M"] == 100.0
    assert fair["per_query_ap"]["M"] == [1.0, 0.0, None] and fair["mAP"]["M"] == 50.0 and fair["mP@1"]["M"] == 50.0
    assert fair["n_evaluated"]["M"] == 2
    gld = [{"easy": [0], "usage": "Private"}, {"easy": [0], "usage": "Private"}, {"easy": [1], "usage": "Public"}]
    g = evaluate_gldv2(ranks, gld, n_db, retrieved_nothing=nothing)
    assert g["per_query_ap"]["Private"] == [1.0, 0.0, None] and g["per_query_ap"]["Public"] == [None, None, 0.0]


def test_drop_self_removes_each_rows_own_id_or_its_last_column():
    ids = np.array([[3, 1, 2], [0, 2, 3]])
    sims = np.array([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]], np.float32)
    out_i, out_s = drop_self(ids, sims, np.array([1, 7]))  # row 0 holds its own id 1; row 1 does not hold 7
    assert out_i.tolist() == [[3, 2], [0, 2]]
    np.testing.assert_allclose(out_s, [[0.9, 0.7], [0.6, 0.5]])
    empty_i, empty_s = drop_self(np.zeros((0, 4), np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert empty_i.shape == (0, 3) and empty_s.shape == (0, 3)  # no rows (a reshape to -1 failed on them)


def test_tied_images_keep_database_order_in_a_shortlist_as_in_a_full_ranking():
    """Identical copies (the same similarity to every query) were listed in faiss's heap order by a top-k search and
    in database order by the full ranking (a new user's trial: a photo and its copy swapped between the collection's
    ranking and a search against it)."""
    q, db = _data(4, n_db=60)
    db[[5, 21, 22, 40, 58]] = db[33]  # five copies of row 33
    full, _ = stream_topk(q, lambda s, e: db[s:e], len(db), len(db), 1000)
    for block in (7, 25, 1000):
        ids, sims = stream_topk(q, lambda s, e: db[s:e], len(db), 20, block)
        np.testing.assert_array_equal(ids, full[:, :20])
        copies = [np.flatnonzero(np.isin(r, [5, 21, 22, 33, 40, 58])) for r in ids]
        for r, c in zip(ids, copies):
            assert r[c].tolist() == sorted(r[c].tolist())

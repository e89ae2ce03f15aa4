"""SuperGlobal re-ranking, Lw and PCA whitening against direct computations."""

import tracemalloc

import numpy as np
import pytest

from retrieval.features.vlad import apply_whitening, fit_pca_whitening, l2_normalise
from retrieval.methods.lw import fit_lw_whitening, positive_pairs
from retrieval.methods.superglobal import SuperGlobalConfig, refine_database, superglobal_rerank


def test_refinement_hand_example():
    a, b, c = np.array([1.0, 0.0]), np.array([0.8, 0.6]), np.array([0.0, 1.0])
    x = np.stack([a, b, c]).astype(np.float32)
    r = refine_database(x, k=1, beta=0.5)
    # a's nearest other row is b (0.8), b's is a (0.8), c's is b (0.6); self weight 1, no re-normalisation
    np.testing.assert_allclose(r[0], (a + 0.4 * b) / 1.4, atol=1e-6)
    np.testing.assert_allclose(r[1], (b + 0.4 * a) / 1.4, atol=1e-6)
    np.testing.assert_allclose(r[2], (c + 0.3 * b) / 1.3, atol=1e-6)


def _direct(q, db, ids, m, k, beta, pool="max"):
    """SuperGlobal written out with loops, one query at a time (``pool``: the expanded query's pooling)."""
    out = ids.copy()
    for i in range(len(ids)):
        lst = list(ids[i, :m])
        refined = {}
        for d in lst:
            sims = sorted(((float(db[d] @ db[e]), e) for e in lst if e != d), reverse=True)[:k]
            num = db[d].astype(np.float64).copy()
            den = 1.0
            for s, e in sims:
                num += beta * s * db[e]
                den += beta * s
            refined[d] = num / den
        s1 = {d: float(q[i] @ refined[d]) for d in lst}
        top = sorted(lst, key=lambda d: -s1[d])[: k + 1]
        q_star = (np.max if pool == "max" else np.mean)([refined[d] for d in top], axis=0)
        s = {d: (s1[d] + float(q_star @ refined[d])) / 2 for d in lst}
        out[i, :m] = sorted(lst, key=lambda d: -s[d])
    return out


def test_superglobal_matches_direct_computation_and_keeps_the_tail():
    rng = np.random.default_rng(0)
    db = l2_normalise(rng.normal(size=(40, 16))).astype(np.float32)
    q = l2_normalise(db[:5] + 0.5 * rng.normal(size=(5, 16))).astype(np.float32)
    sims = q @ db.T
    ids = np.argsort(-sims, axis=1).astype(np.int32)
    sims = np.take_along_axis(sims, ids, axis=1)
    for pool in ("max", "mean"):
        cfg = SuperGlobalConfig(m=12, k=3, beta=0.15, query_pool=pool)
        got, scores = superglobal_rerank(q, db, ids, sims, cfg)
        np.testing.assert_array_equal(got, _direct(q, db, ids, 12, 3, 0.15, pool))
        np.testing.assert_array_equal(got[:, 12:], ids[:, 12:])  # beyond M: the global order
        assert (np.diff(scores[:, :12], axis=1) <= 1e-6).all()
        assert not np.array_equal(got, ids)  # the example does re-order something
        # M larger than the database is clamped
        got_all, _ = superglobal_rerank(q, db, ids, sims, SuperGlobalConfig(m=400, k=3, beta=0.15, query_pool=pool))
        np.testing.assert_array_equal(got_all, _direct(q, db, ids, 40, 3, 0.15, pool))
    maxed = superglobal_rerank(q, db, ids, sims, SuperGlobalConfig(m=40, k=3, query_pool="max"))[0]
    meaned = superglobal_rerank(q, db, ids, sims, SuperGlobalConfig(m=40, k=3, query_pool="mean"))[0]
    assert not np.array_equal(maxed, meaned)  # the two poolings rank this example differently


def test_superglobal_query_pool_auto_is_resolved_from_the_whitening():
    auto = SuperGlobalConfig()
    assert auto.query_pool == "auto"
    assert auto.resolved(unwhitened_vlad=True).query_pool == "mean"
    assert auto.resolved(unwhitened_vlad=False).query_pool == "max"  # the official code's
    assert SuperGlobalConfig(query_pool="max").resolved(unwhitened_vlad=True).query_pool == "max"  # a choice is kept
    assert SuperGlobalConfig(query_pool="mean").resolved(unwhitened_vlad=False).query_pool == "mean"
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="auto must be resolved"):
        superglobal_rerank(x[:1], x, np.array([[0, 1, 2]]), np.ones((1, 3), np.float32), auto)
    with pytest.raises(ValueError, match="superglobal.query_pool: 'median' is not one of auto, max, mean"):
        SuperGlobalConfig(query_pool="median")


def test_pca_whitening_whitens_the_training_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8)) + 3.0
    w = fit_pca_whitening(x, 8)
    y = (x - w["mean"]) @ w["projection"].T / np.sqrt(w["eigenvalues"])
    np.testing.assert_allclose(np.cov(y.T), np.eye(8), atol=1e-3)
    np.testing.assert_allclose(w["projection"] @ w["projection"].T, np.eye(8), atol=1e-5)  # orthonormal rows
    # power 0 is a rotation: distances between (un-normalised) projections are preserved
    y0 = (x - w["mean"]) @ w["projection"].T
    np.testing.assert_allclose(np.linalg.norm(y0[0] - y0[1]), np.linalg.norm(x[0] - x[1]), rtol=1e-4)


def test_lw_whitens_the_matching_pair_differences():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(60, 6)) * 3
    labels = np.repeat(np.arange(60), 4)
    noise = rng.normal(size=(240, 6)) @ np.diag([2.0, 1.0, 0.5, 0.2, 0.1, 0.05])
    x = centres[labels] + noise
    pairs = positive_pairs(labels, 10_000, 0)
    assert (
        len(pairs) == 60 * 6
        and (labels[pairs[:, 0]] == labels[pairs[:, 1]]).all()
        and (pairs[:, 0] < pairs[:, 1]).all()
    )
    w = fit_lw_whitening(x, pairs, ridge=0.0)
    df = x[pairs[:, 0]] - x[pairs[:, 1]]
    s = df.T @ df / len(df)
    p = w["projection"].astype(np.float64)
    np.testing.assert_allclose(p @ s @ p.T, np.eye(6), atol=1e-3)
    assert (np.diff(w["eigenvalues"]) <= 1e-6).all()
    # after Lw, matching pairs are closer relative to non-matching ones than before
    y = apply_whitening(x, w, power=0.0)
    xn = l2_normalise(x)

    def margin(z):
        pos = (z[pairs[:, 0]] * z[pairs[:, 1]]).sum(1).mean()
        return pos - (z[::4] @ z[::4].T)[np.triu_indices(60, 1)].mean()

    assert margin(y) > margin(xn)


def test_positive_pairs_subsample_and_errors():
    labels = np.array([0, 0, 0, 1, 1, -1, -1])
    assert len(positive_pairs(labels, 100, 0)) == 3 + 1  # unlabelled (-1) rows never pair
    sub = positive_pairs(labels, 2, 0)
    assert len(sub) == 2 and np.array_equal(sub, positive_pairs(labels, 2, 0))
    assert positive_pairs(labels, 100, 0).tolist() == [[0, 1], [0, 2], [1, 2], [3, 4]]


@pytest.mark.parametrize("max_pairs", [1, 7, 40, 10_000])
def test_positive_pairs_are_a_seeded_subset_of_every_pair_without_building_them(max_pairs):
    """The subset is the one drawn from the list of every pair (labels sorted, np.triu_indices order in each), built
    pair by pair: one label of 20,000 images (200M pairs, 3.2 GB as int64 when all were built) costs megabytes."""
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 6, 80)
    every = np.concatenate(
        [
            np.stack([rows[i], rows[j]], 1)
            for rows in (np.flatnonzero(labels == lab) for lab in range(6))
            for i, j in [np.triu_indices(len(rows), 1)]
        ]
    )
    want = (
        every
        if len(every) <= max_pairs
        else every[np.sort(np.random.default_rng(0).choice(len(every), max_pairs, replace=False))]
    )
    np.testing.assert_array_equal(positive_pairs(labels, max_pairs, 0), want)
    tracemalloc.start()
    big = positive_pairs(np.repeat(np.arange(2), [20_000, 3]), 50_000, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert big.shape == (50_000, 2) and (big[:, 0] < big[:, 1]).all() and peak < 100e6


def test_lw_fit_errors():
    with pytest.raises(ValueError, match="matching pairs"):
        fit_lw_whitening(np.zeros((3, 2)), np.zeros((0, 2), int))
    with pytest.raises(ValueError, match="singular"):
        fit_lw_whitening(np.ones((4, 3)), np.array([[0, 1], [2, 3]]), ridge=0.0)

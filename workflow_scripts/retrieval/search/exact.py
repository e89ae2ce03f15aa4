"""Exact first-stage search: the streamed top k of inner products over a database read in blocks,
and faiss's flat top k for in-memory arrays; images without features rank last (featureless.py)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from retrieval.featureless import NO_MATCH_SCORE, drop_self, featureless_rows, rank_featureless_last, search_featured
from retrieval.stores.global_store import block_rows


def topk_neighbours(
    queries: np.ndarray, db: np.ndarray, k: int, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search: ids (Nq, k') int32 and sims (Nq, k') float32, best first, with k' = min(k, n_db)
    (n_db - 1 with ``exclude_self``); ValueError when the query and database dimensions differ.

    ``exclude_self`` is for database-vs-database search (training pairs): row i never returns i. All-zero rows are
    images without features: never a match (featureless.py), they rank last in database order with similarity -inf.
    Images tied in similarity are listed in database order (which of several images tied at the k-th similarity
    is kept is faiss's choice), as :func:`stream_topk` lists them.
    """

    q = np.ascontiguousarray(queries, np.float32)
    x = np.ascontiguousarray(db, np.float32)
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"query dimension {q.shape[1]} != database dimension {x.shape[1]}")
    ids, sims = search_featured(q, x, k, lambda a, b, kk: _faiss_topk(a, b, kk, exclude_self), exclude_self)
    return ids.astype(np.int32), sims.astype(np.float32)


def _faiss_topk(q: np.ndarray, x: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    import faiss  # noqa: PLC0415

    n_db = len(x)
    k_eff = min(k + int(exclude_self), n_db)
    sims, ids = faiss.knn(q, x, k_eff, metric=faiss.METRIC_INNER_PRODUCT)
    if exclude_self:
        ids, sims = drop_self(ids, sims, np.arange(len(q)))
    # ties by database order, as stream_topk's and the full ranking's: faiss gives tied images (identical copies)
    # in its heap's order, so the in-memory neighbours (AMES's training pairs, aqe/adba) could list them otherwise
    order = np.lexsort((ids[:, :k], -sims[:, :k]), axis=1)
    return np.take_along_axis(ids[:, :k], order, 1).astype(np.int32), np.take_along_axis(sims[:, :k], order, 1)


def stream_topk(
    q: np.ndarray, read_block: Callable[[int, int], np.ndarray], n_db: int, k: int, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of queries q (Nq, D) over a database read in blocks ``read_block(start, stop)`` of
    :func:`block_rows` rows (at most ``block``, at most 256 MiB of float32).

    A full ranking (k >= n_db, what the revisitop metrics need) fills the (Nq, n_db) similarity matrix block by
    block and sorts it once (ties by database order): at 1M images and 70 queries 2x faster than merging per
    block, and its memory is that matrix. A shortlist (k < n_db) keeps the running top k, merged per block, ties in
    it by database order too (which of several images tied at the k-th similarity of a block is kept is faiss's).

    All-zero rows are images without features (featureless.py): a database row never outranks a row with
    features (similarity -inf, last in database order) and a query row gets the database order.

    Returns ids (Nq, min(k, n_db)) int64 and sims (Nq, min(k, n_db)) float32, best first."""
    import faiss  # noqa: PLC0415

    q = np.ascontiguousarray(q, np.float32)
    k = min(k, n_db)
    block = block_rows(block, q.shape[1])
    q_none, db_none = featureless_rows(q), np.zeros(n_db, bool)
    if k == n_db:
        sims_all = np.empty((len(q), n_db), np.float32)
        for s in range(0, n_db, block):
            x = np.ascontiguousarray(read_block(s, min(n_db, s + block)), np.float32)
            db_none[s : s + len(x)] = featureless_rows(x)
            sims_all[:, s : s + len(x)] = q @ x.T
        sims_all[:, db_none] = NO_MATCH_SCORE
        order = np.argsort(-sims_all, axis=1, kind="stable")
        best_i, best_s = order.astype(np.int64), np.take_along_axis(sims_all, order, 1)
        return rank_featureless_last(best_i, best_s, q_none, db_none, k)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, n_db, block):
        x = np.ascontiguousarray(read_block(s, min(n_db, s + block)), np.float32)
        none = featureless_rows(x)
        db_none[s : s + len(x)] = none
        rows = np.flatnonzero(~none)  # only images with features compete for the top k
        if not len(rows):
            continue
        xs = x[rows] if none.any() else x
        sims, ids = faiss.knn(q, xs, min(k, len(rows)), metric=faiss.METRIC_INNER_PRODUCT)
        cand_s, cand_i = np.concatenate([best_s, sims], 1), np.concatenate([best_i, rows[ids] + s], 1)
        # ties by database order, as the full ranking's (faiss returns tied images in its heap's order: two
        # identical copies came out in another order than in the collection's own ranking)
        order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return rank_featureless_last(best_i, best_s, q_none, db_none, k)


def locate(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each entry of ``wanted`` (m,) int sits in ``ids`` (K,) int (one query's shortlist, any order; a value
    listed twice is found at its first place): positions (m,) int64 into ``ids`` (0 where absent) and whether it
    was found (m,) bool. One sort of ``ids``, then a binary search per entry. The one look-up behind every value
    read along a re-ordered shortlist (similarities, AMES's cached logits, sv's inliers)."""
    ids, wanted = np.asarray(ids), np.asarray(wanted)
    if len(ids) == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], wanted), len(ids) - 1)
    return order[pos].astype(np.int64), ids[order][pos] == wanted


def similarity_along(shortlist: np.ndarray, ids: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """The global similarities (Nq, m) float32 of ``shortlist`` (Nq, m) int, a re-ordering of the first-stage
    neighbours ``ids`` (Nq, K) int with similarities ``sims`` (Nq, K) (a re-ranked shortlist: sv's, a search's).
    ValueError naming the query row for an entry that is not among that row's ``ids`` (its similarity was another
    image's, or an IndexError)."""
    out = np.zeros(shortlist.shape, np.float32)
    for i in range(ids.shape[0]):
        pos, found = locate(ids[i], shortlist[i])
        if not found.all():
            raise ValueError(
                f"shortlist row {i}: image(s) {shortlist[i][~found][:5].tolist()} are not among its first-stage "
                "neighbours"
            )
        out[i] = sims[i][pos]
    return out

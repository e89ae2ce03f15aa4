"""No features is no match (issue 14, item 2): images without descriptors rank after every image with features.

An image gets no local descriptors when it is blank, too small for the detector, or skipped as unreadable
(``on_bad_image: skip``). Its global descriptor is then the zero vector (VLAD of nothing, ``DeepExtractor.empty``,
whitening keeps zero rows zero, an imported all-zero row): **a global descriptor that is all zeros means "no
features"**. A zero vector has similarity 0 to everything, which ranks it above every image whose similarity is
negative, and any centring step (PCA-whitening subtracts a mean) turns all of them into one shared vector that
matches the others exactly: the rules here replace those accidents.

* A database image without features ranks after every image with features, those among themselves in database
  order, with the score ``NO_MATCH_SCORE`` (-inf; written ``-inf`` in the neighbours CSV).
* A query without features ranks the images with features in database order, then those without, every score
  -inf: no evidence, no order but the database's. It is evaluated with AP 0 (and P@k 0) wherever it has positives,
  not by that order (``metrics.NOTHING_RETRIEVED``), and named in the results JSON (``queries_without_features``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

NO_MATCH_SCORE = -np.inf


def featureless_rows(x: np.ndarray) -> np.ndarray:
    """(N,) bool: the rows of ``x`` (N, D) that are all zero, i.e. images without features."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected (N, D) descriptors, got shape {x.shape}")
    return ~np.any(x != 0, axis=1)


def default_order(db_featureless: np.ndarray) -> np.ndarray:
    """The ranking without evidence: images with features in database order, then those without."""
    return np.concatenate([np.flatnonzero(~db_featureless), np.flatnonzero(db_featureless)])


def rank_featureless_last(
    ids: np.ndarray, scores: np.ndarray, q_featureless: np.ndarray, db_featureless: np.ndarray, k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row of a ranking with images without features moved last (database order) and scored -inf.

    ``ids`` (Nq, m) database indices best first (a ranking or a shortlist whose featured entries came from a
    featureless-aware search), ``scores`` (Nq, m); ``k`` columns out (default m). A row of a featured query keeps
    its featured entries in the given order and is completed with the featureless images in database order; a
    featureless query's row is ``default_order``. Returns (ids int64 (Nq, k), scores float32 (Nq, k))."""
    ids = np.asarray(ids)
    scores = np.asarray(scores, np.float32)
    q_featureless = np.asarray(q_featureless, bool)
    db_featureless = np.asarray(db_featureless, bool)
    nq, m = ids.shape
    k = m if k is None else k
    if k > len(db_featureless):
        raise ValueError(f"k={k} is beyond the {len(db_featureless)} database images")
    if not q_featureless.any() and not db_featureless.any() and k <= m:
        return ids[:, :k].astype(np.int64), scores[:, :k]
    tail = np.flatnonzero(db_featureless)
    default = default_order(db_featureless)[:k]
    out_i = np.empty((nq, k), np.int64)
    out_s = np.full((nq, k), NO_MATCH_SCORE, np.float32)
    for r in range(nq):
        if q_featureless[r]:
            out_i[r] = default
            continue
        keep = ~db_featureless[ids[r]]
        row_i, row_s = ids[r][keep][:k], scores[r][keep][:k]
        n = len(row_i)
        out_i[r, :n], out_s[r, :n] = row_i, row_s
        if n < k:
            fill = tail[: k - n]
            if len(fill) < k - n:  # a shortlist of featured images shorter than k: the rest in database order
                rest = np.setdiff1d(np.flatnonzero(~db_featureless), row_i, assume_unique=True)
                fill = np.concatenate([rest[: k - n - len(fill)], fill])
            out_i[r, n:] = fill
    return out_i, out_s


def search_featured(
    q: np.ndarray,
    db: np.ndarray,
    k: int,
    search: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of every query by ``search(q_rows, db_rows, k) -> (ids, sims)`` run on the rows with features only,
    completed by ``rank_featureless_last``. ``exclude_self`` (q is db): row i never returns i, also for rows without
    features. Returns (ids int64 (Nq, k'), sims float32 (Nq, k')), k' = min(k, n_db - exclude_self)."""
    qf, dbf = featureless_rows(q), featureless_rows(db)
    n_db = len(db)
    k = min(k, n_db - int(exclude_self))
    if not qf.any() and not dbf.any():
        ids, sims = search(q, db, k)
        return np.asarray(ids, np.int64), np.asarray(sims, np.float32)
    fq, fd = np.flatnonzero(~qf), np.flatnonzero(~dbf)
    ids = np.zeros((len(q), 0), np.int64)
    sims = np.zeros((len(q), 0), np.float32)
    if len(fq) and len(fd) > int(exclude_self):
        sub_i, sub_s = search(q[fq], db[fd], min(k, len(fd) - int(exclude_self)))
        ids = np.zeros((len(q), sub_i.shape[1]), np.int64)
        sims = np.full((len(q), sub_i.shape[1]), NO_MATCH_SCORE, np.float32)
        ids[fq], sims[fq] = fd[sub_i], sub_s
    if not exclude_self:
        return rank_featureless_last(ids, sims, qf, dbf, k)
    out_i, out_s = drop_self(*rank_featureless_last(ids, sims, qf, dbf, min(k + 1, n_db)), np.arange(len(q)))
    return out_i[:, :k], out_s[:, :k]


def drop_self(ids: np.ndarray, sims: np.ndarray, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of database images searched against their own database: ``ids`` / ``sims`` (n, K) without each
    row's own id ``row_ids`` (n,), or without the last column where the row does not hold it (n, K - 1)."""
    keep = ids != np.asarray(row_ids)[:, None]
    keep[keep.all(axis=1), -1] = False
    width = ids.shape[1] - 1
    return ids[keep].reshape(len(ids), width), sims[keep].reshape(len(ids), width)

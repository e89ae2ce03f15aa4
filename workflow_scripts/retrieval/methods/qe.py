"""Alpha query expansion and alpha database augmentation on global descriptors (deep-image-retrieval's
``--aqe k alpha`` / ``--adba k alpha``): a vector is replaced by the L2-normalised mean of itself (weight 1)
and its top-k neighbours weighted by similarity**alpha, similarities clamped at 0. Database augmentation
searches the database against itself without the self match and comes before query expansion."""

from __future__ import annotations

from typing import Any

import numpy as np

from retrieval.featureless import featureless_rows
from retrieval.features.vlad import l2_normalise
from retrieval.search.exact import topk_neighbours


def alpha_expand(x: np.ndarray, pool: np.ndarray, k: int, alpha: float, exclude_self: bool = False) -> np.ndarray:
    """alpha-QE / alpha-DBA (Radenović et al., TPAMI 2018; deep-image-retrieval's ``--aqe`` / ``--adba``): each row of
    ``x`` (n, D) float32, L2-normalised, expanded with its top-``k`` rows of ``pool`` (N, D) by cosine similarity
    (``exclude_self``: x is pool, and row i never finds itself), as :func:`expand_with`: (n, D) float32,
    L2-normalised. ``k`` 0: ``x`` re-normalised. A zero row (an image without features, featureless.py) stays
    zero: its "neighbours" are the database order, not evidence."""
    if k <= 0:
        return l2_normalise(np.asarray(x, np.float32))
    ids, sims = topk_neighbours(x, pool, k, exclude_self=exclude_self)
    return expand_with(x, sims, pool[ids], alpha)


def expand_with(x: np.ndarray, sims: np.ndarray, neighbours: np.ndarray, alpha: float) -> np.ndarray:
    """The alpha expansion of rows ``x`` (n, D) from their neighbours' vectors ``neighbours`` (n, k, D) and
    similarities ``sims`` (n, k) (-inf: no match, weight 0): L2-normalised (x + sum_j max(s_j, 0)**alpha n_j) /
    (k + 1), float32; a zero row of ``x`` stays zero. The search that found the neighbours is the caller's (in
    memory, or streamed over a database file)."""
    w = np.maximum(sims, 0.0) ** alpha  # (n, k); -inf (no match) weighs 0
    w[~np.isfinite(sims)] = 0.0  # also for alpha = 0, where 0 ** 0 would be 1
    expanded = x + np.einsum("nk,nkd->nd", w, neighbours)
    expanded[featureless_rows(x)] = 0.0
    return l2_normalise(expanded / (sims.shape[1] + 1)).astype(np.float32)


def expand(
    q: np.ndarray, db: np.ndarray, qe: dict[str, Any] | None, dba: dict[str, Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Database augmentation (``dba``: ``{"k", "alpha"}``, or None) of the database ``db`` (N, D) against itself, then
    query expansion (``qe``: ``{"k", "alpha"}``, or None) of the queries ``q`` (n, D) against the augmented
    database, as deep-image-retrieval orders them: (q', db'), each expanded one float32 with L2-normalised rows
    (:func:`alpha_expand`), the other returned as given."""
    if dba is not None:
        db = alpha_expand(db, db, int(dba["k"]), float(dba["alpha"]), exclude_self=True)
    if qe is not None:
        q = alpha_expand(q, db, int(qe["k"]), float(qe["alpha"]))
    return q, db

"""SuperGlobal's re-ranking (Shao et al., ICCV 2023: MDescAug + RerankwMDA) on global descriptors.

For each query, the top-M list L of the global ranking is refined without local features:

1. every d in L becomes d' = (d + sum_i beta*s(d, n_i)*n_i) / (1 + sum_i beta*s(d, n_i)) over its K nearest
   neighbours n_i within L (itself excluded, self weight 1; d' is not re-normalised);
2. S1(d) = q . d', and L is sorted by S1;
3. the query becomes q* = the element-wise max of the first K+1 refined vectors in S1 order (the query itself not
   included, no weights: the official code computes weights there but never uses them);
4. S(d) = (S1(d) + q* . d') / 2 re-sorts L; positions beyond M keep their global order.

All vectors are L2-normalised global descriptors and s(a, b) = a . b. Defaults M=400 (clamped to the database),
K=9, beta=0.15, as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SuperGlobalConfig:
    m: int = 400
    k: int = 9
    beta: float = 0.15


def refine_database(x: np.ndarray, k: int, beta: float) -> np.ndarray:
    """MDescAug on one shortlist: rows of ``x`` (M, C) refined with their k nearest other rows of x."""
    m = len(x)
    k = min(k, m - 1)
    if k <= 0:
        return x.astype(np.float32, copy=True)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)  # the neighbours are the other members of the list; self enters with weight 1
    nn = np.argpartition(-s, k - 1, axis=1)[:, :k]
    w = beta * np.take_along_axis(s, nn, axis=1)  # (M, k)
    return ((x + np.einsum("mk,mkc->mc", w, x[nn])) / (1.0 + w.sum(axis=1, keepdims=True))).astype(np.float32)


def rerank_query(q: np.ndarray, shortlist_x: np.ndarray, cfg: SuperGlobalConfig) -> tuple[np.ndarray, np.ndarray]:
    """Order (M,) of the shortlist rows and their final scores (M,) for one query vector q (C,)."""
    refined = refine_database(shortlist_x, cfg.k, cfg.beta)
    s1 = refined @ q
    first = np.argsort(-s1, kind="stable")[: cfg.k + 1]
    q_star = refined[first].max(axis=0)
    s = 0.5 * (s1 + refined @ q_star)
    order = np.argsort(-s, kind="stable")
    return order, s[order]


def superglobal_rerank(
    q: np.ndarray, db: np.ndarray, ids: np.ndarray, sims: np.ndarray, cfg: SuperGlobalConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Re-ranked ids and scores (same shape as ``ids``): the top M re-sorted, the rest in global order."""
    m = min(cfg.m, ids.shape[1])
    out_ids, out_s = ids.copy(), sims.astype(np.float32, copy=True)
    for i in range(len(ids)):
        order, s = rerank_query(q[i].astype(np.float32), db[ids[i, :m]].astype(np.float32), cfg)
        out_ids[i, :m] = ids[i, :m][order]
        out_s[i, :m] = s
    return out_ids, out_s

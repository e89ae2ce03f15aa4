"""SuperGlobal's re-ranking (Shao et al., ICCV 2023: MDescAug + RerankwMDA) on global descriptors.

For each query, the top-M list L of the global ranking is refined without local features:

1. every d in L becomes d' = (d + sum_i beta*s(d, n_i)*n_i) / (1 + sum_i beta*s(d, n_i)) over its K nearest
   neighbours n_i within L (itself excluded, self weight 1; d' is not re-normalised);
2. S1(d) = q . d', and L is sorted by S1;
3. the query becomes q* = a pooling of the first K+1 refined vectors in S1 order (the query itself not included, no
   weights: the official code computes weights there but never uses them; q* not re-normalised): their element-wise
   max, as the official code, or their mean (``query_pool``, below);
4. S(d) = (S1(d) + q* . d') / 2 re-sorts L; positions beyond M keep their global order.

``query_pool: auto`` (the workflow's default) resolves to the mean for VLAD global descriptors that were not
PCA-whitened, and to the official max for everything else (whitened VLAD, a backbone's or imported descriptors:
CVNet's whitened GeM, what the paper re-ranks). Measured on landmarks-mini (real photos, Medium mAP; README,
"SuperGlobal re-ranking"): unwhitened VLAD, global 97.20, max 88.04, mean 99.34; VLAD PCA-whitened on
``demo-train``, global 93.91, max 95.54, mean 94.58.

All vectors are L2-normalised global descriptors and s(a, b) = a . b. Defaults M=400 (clamped to the database),
K=9, beta=0.15, as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

QUERY_POOLS = ("auto", "max", "mean")


@dataclass(frozen=True)
class SuperGlobalConfig:
    """SuperGlobal's re-ranking (config ``superglobal``; Shao et al., ICCV 2023, the official code's defaults): the top
    ``m`` of each shortlist (clamped to its length) re-ranked, each vector refined with its ``k`` nearest neighbours in
    the list weighted by ``beta`` (MDescAug), the query expanded by pooling the first ``k + 1`` refined vectors
    (``query_pool``: max as the official code, mean, or auto, resolved by :meth:`resolved`). ValueError naming the key
    for any other ``query_pool``."""

    m: int = 400
    k: int = 9
    beta: float = 0.15
    query_pool: str = "auto"  # max | mean, or auto: resolved by :meth:`resolved` from the global descriptor's kind

    def __post_init__(self) -> None:
        if self.query_pool not in QUERY_POOLS:
            raise ValueError(f"superglobal.query_pool: {self.query_pool!r} is not one of {', '.join(QUERY_POOLS)}")

    def resolved(self, unwhitened_vlad: bool) -> SuperGlobalConfig:
        """This configuration with ``query_pool`` ``auto`` made ``mean`` for VLAD global descriptors without
        PCA-whitening (``unwhitened_vlad``) and ``max`` (the official code) otherwise; ``max`` / ``mean`` kept."""
        if self.query_pool != "auto":
            return self
        return replace(self, query_pool="mean" if unwhitened_vlad else "max")


def refine_database(x: np.ndarray, k: int, beta: float) -> np.ndarray:
    """MDescAug (SuperGlobal, Shao et al., ICCV 2023, the official ``MDescAug``) on one shortlist: the rows of ``x``
    (M, C) float32, L2-normalised, each refined with its ``k`` nearest other rows n_i by similarity s_i:
    ``(x + sum_i beta s_i n_i) / (1 + sum_i beta s_i)``, not re-normalised (``beta`` 0.15: the official code's
    weight of a neighbour against the row's own 1). (M, C) float32; ``k`` is clamped to M - 1, and 0 returns a
    copy."""
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
    """RerankwMDA (SuperGlobal, Shao et al., ICCV 2023, steps 2-4 of the module docstring) for one query vector
    ``q`` (C,) float32 and its shortlist's vectors ``shortlist_x`` (M, C) float32, both L2-normalised: the order
    (M,) int64 of the shortlist rows, best first, and their final scores (M,) float32, ``(q . d' + q* . d') / 2``.
    ValueError for ``cfg.query_pool`` ``auto`` (resolve it first: :meth:`SuperGlobalConfig.resolved`)."""
    if cfg.query_pool == "auto":
        raise ValueError("superglobal.query_pool: auto must be resolved (SuperGlobalConfig.resolved) before re-ranking")
    refined = refine_database(shortlist_x, cfg.k, cfg.beta)
    s1 = refined @ q
    first = np.argsort(-s1, kind="stable")[: cfg.k + 1]
    q_star = refined[first].max(axis=0) if cfg.query_pool == "max" else refined[first].mean(axis=0)
    s = 0.5 * (s1 + refined @ q_star)
    order = np.argsort(-s, kind="stable")
    return order, s[order]


def superglobal_rerank(
    q: np.ndarray, db: np.ndarray, ids: np.ndarray, sims: np.ndarray, cfg: SuperGlobalConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Re-ranked ids and scores (same shape as ``ids``): the top M re-sorted, the rest in global order.

    ``q`` (Nq, C) and ``db`` (N, C) float32, L2-normalised; ``ids`` / ``sims`` (Nq, K) the global shortlist
    (indices into ``db``, int) and its similarities. ValueError for an unresolved ``query_pool`` ``auto``."""
    m = min(cfg.m, ids.shape[1])
    out_ids, out_s = ids.copy(), sims.astype(np.float32, copy=True)
    for i in range(len(ids)):
        order, s = rerank_query(q[i].astype(np.float32), db[ids[i, :m]].astype(np.float32), cfg)
        out_ids[i, :m] = ids[i, :m][order]
        out_s[i, :m] = s
    return out_ids, out_s

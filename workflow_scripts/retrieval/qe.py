"""Alpha query expansion and alpha database augmentation on global descriptors (deep-image-retrieval's
``--aqe k alpha`` / ``--adba k alpha``): a vector is replaced by the L2-normalised mean of itself (weight 1)
and its top-k neighbours weighted by similarity**alpha, similarities clamped at 0. Database augmentation
searches the database against itself without the self match and comes before query expansion."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .featureless import featureless_rows
from .vlad import l2_normalise, topk_neighbours

log = logging.getLogger(__name__)


def alpha_expand(x: np.ndarray, pool: np.ndarray, k: int, alpha: float, exclude_self: bool = False) -> np.ndarray:
    """Each row of ``x`` expanded with its top-``k`` rows of ``pool`` (``exclude_self``: x is pool). A zero row (an
    image without features, featureless.py) stays zero: its "neighbours" are the database order, not evidence."""
    if k <= 0:
        return l2_normalise(np.asarray(x, np.float32))
    ids, sims = topk_neighbours(x, pool, k, exclude_self=exclude_self)
    w = np.maximum(sims, 0.0) ** alpha  # (n, k); -inf (no match) weighs 0
    w[~np.isfinite(sims)] = 0.0  # also for alpha = 0, where 0 ** 0 would be 1
    expanded = x + np.einsum("nk,nkd->nd", w, pool[ids])
    expanded[featureless_rows(x)] = 0.0
    return l2_normalise(expanded / (ids.shape[1] + 1)).astype(np.float32)


def expand(q: np.ndarray, db: np.ndarray, qe: dict[str, Any] | None, dba: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """Database augmentation (if given), then query expansion against the augmented database."""
    if dba is not None:
        db = alpha_expand(db, db, int(dba["k"]), float(dba["alpha"]), exclude_self=True)
    if qe is not None:
        q = alpha_expand(q, db, int(qe["k"]), float(qe["alpha"]))
    return q, db


def evaluate_qe_stage(query_global: str, db_global: str, knn_path: str, lists_path: str, gnd_path: str,
                      baseline_json: str, out_json: str, out_ranking: str, out_csv: str, dataset: str, method: str,
                      qe_cfg: dict[str, Any], dba_cfg: dict[str, Any] | None, n_bootstrap: int, ks, csv_top: int,
                      versions: dict[str, str], hyperparameters: dict[str, Any], preset: str) -> None:
    from .global_store import read_global, read_neighbours  # noqa: PLC0415
    from .runtime import read_json  # noqa: PLC0415
    from .pipeline import cost_timing, write_reranked_evaluation  # noqa: PLC0415

    t0 = time.time()
    q, db = read_global(query_global), read_global(db_global)
    base_ids, _, _ = read_neighbours(knn_path)
    lists, gnd = read_json(lists_path), read_json(gnd_path)
    t1 = time.time()
    dbn = expand(q, db, None, dba_cfg)[1] if dba_cfg is not None else db  # once per database, not per query
    t2 = time.time()
    qn, _ = expand(q, dbn, qe_cfg, None)
    ids, sims = topk_neighbours(qn, dbn, len(dbn))  # the expanded query searches the database again
    t3 = time.time()
    write_reranked_evaluation(method, ids, sims, base_ids, lists, gnd, dataset, out_json, out_ranking, out_csv,
                              baseline_json, knn_path, n_bootstrap, ks, csv_top, versions, hyperparameters, preset,
                              timing=cost_timing(len(q), reads=t1 - t0, rerank=t3 - t2, offline=t2 - t1 if dba_cfg is not None else 0.0))

"""The ``evaluate_superglobal`` stage: SuperGlobal's re-ranking of the global shortlist."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.evaluation.results import EvaluationContext, cost_timing, rerank_depth, write_reranked_evaluation
from retrieval.methods.superglobal import SuperGlobalConfig, superglobal_rerank
from retrieval.runtime import load_npz, read_json
from retrieval.stores.global_store import check_dim, global_shape, read_global, read_global_rows, read_neighbours

log = logging.getLogger(__name__)


def superglobal_from_file(
    q: np.ndarray, db_path: str | Path, ids: np.ndarray, sims: np.ndarray, conf: SuperGlobalConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    """``superglobal_rerank`` of the shortlist ``ids`` / ``sims`` (Nq, K) with the database in a global-descriptor
    file: only the rows of each query's top M are read (at most Nq x M of them; a million 8192-d descriptors
    would be 32 GB), the same rows and arithmetic as on the whole database in memory. Returns the re-ranked ids
    and scores (Nq, K) and the seconds spent reading the file. ValueError naming the file for a dimension that is
    not the queries'."""
    check_dim(db_path, global_shape(db_path)[1], q.shape[1])
    m = min(conf.m, ids.shape[1])
    t0 = time.time()
    rows = np.unique(ids[:, :m])
    x = read_global_rows(db_path, rows)
    seconds = time.time() - t0
    top, top_scores = superglobal_rerank(q, x, np.searchsorted(rows, ids[:, :m]), sims[:, :m], conf)
    ranking, scores = ids.copy(), sims.astype(np.float32, copy=True)
    ranking[:, :m], scores[:, :m] = rows[top], top_scores
    return ranking, scores, seconds


def evaluate_superglobal_stage(
    ctx: EvaluationContext,
    query_global: str,
    db_global: str,
    knn_path: str,
    cfg: dict[str, Any],
    whiten_path: str | None = None,
) -> None:
    """SuperGlobal's re-ranking (``cfg``: config ``superglobal``) of the global shortlist in ``knn_path``, from the
    global descriptors ``(n, D)`` float32, evaluated next to it. Only the shortlist's top ``m`` rows of the database
    are read (:func:`superglobal_from_file`). ``whiten_path``: the PCA-whitening file of VLAD global descriptors
    (None for a backbone's or imported ones); ``query_pool: auto`` takes the mean when it was not applied
    (:meth:`SuperGlobalConfig.resolved`), and the results JSON records the pooling used (``query_pool``). ValueError
    when the shortlist's shape does not match the descriptors or the lists."""

    unwhitened_vlad = whiten_path is not None and not bool(load_npz(whiten_path).get("applied", True))
    conf = SuperGlobalConfig(**cfg).resolved(unwhitened_vlad)
    t0 = time.time()
    q = read_global(query_global)
    n_db, _ = global_shape(db_global)
    ids, sims, _ = read_neighbours(knn_path)
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    if ids.shape[0] != len(q) or n_db != len(lists["db"]):
        raise ValueError(f"{knn_path}: shape {ids.shape} does not match {query_global} / {db_global}")
    applied = rerank_depth("superglobal.m", conf.m, ids.shape[1], n_db)
    # a shortlisted vector is refined with at most the other m - 1 (refine_database): a larger k ran without a word
    # and the results recorded only the configured one (helper-97's trial), where aqe records its k_applied
    k_applied = min(conf.k, max(applied - 1, 0))
    if k_applied < conf.k:
        log.warning(
            "superglobal.k %d is at least the %d images re-ranked (superglobal.m, or the shortlist where it is shorter): "
            "each is refined with the other %d",
            conf.k,
            applied,
            k_applied,
        )
    t1 = time.time()
    ranking, scores, db_reads = superglobal_from_file(q, db_global, ids, sims, conf)
    t2 = time.time()
    log.info(
        "superglobal: %d queries, M=%d, K=%d, expanded query pooled by its %s (query_pool %s) in %.2f s",
        len(q),
        applied,
        conf.k,
        conf.query_pool,
        cfg.get("query_pool", "auto"),
        t2 - t1,
    )
    write_reranked_evaluation(
        ctx,
        "superglobal",
        ranking,
        scores,
        ids,
        lists,
        gnd,
        knn_path,
        timing=cost_timing(len(q), reads=t1 - t0 + db_reads, rerank=t2 - t1 - db_reads),
        extra={"query_pool": conf.query_pool, "num_rerank_applied": applied, "k_applied": {"superglobal": k_applied}},
    )

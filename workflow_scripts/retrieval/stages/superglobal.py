"""The ``evaluate_superglobal`` stage: SuperGlobal's re-ranking of the global shortlist."""

from __future__ import annotations

import logging
import time
from typing import Any

from retrieval.evaluation.results import EvaluationContext, cost_timing, write_reranked_evaluation
from retrieval.methods.superglobal import SuperGlobalConfig, superglobal_rerank
from retrieval.runtime import read_json
from retrieval.stores.global_store import read_global, read_neighbours

log = logging.getLogger(__name__)


def evaluate_superglobal_stage(
    ctx: EvaluationContext, query_global: str, db_global: str, knn_path: str, cfg: dict[str, Any]
) -> None:
    """SuperGlobal's re-ranking (``cfg``: config ``superglobal``) of the global shortlist in ``knn_path``, from the
    global descriptors ``(n, D)`` float32, evaluated next to it. ValueError when the shortlist's shape does not
    match the descriptors or the lists."""

    conf = SuperGlobalConfig(**cfg)
    t0 = time.time()
    q, db = read_global(query_global), read_global(db_global)
    ids, sims, _ = read_neighbours(knn_path)
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    if ids.shape[0] != len(q) or len(db) != len(lists["db"]):
        raise ValueError(f"{knn_path}: shape {ids.shape} does not match {query_global} / {db_global}")
    t1 = time.time()
    ranking, scores = superglobal_rerank(q, db, ids, sims, conf)
    t2 = time.time()
    log.info("superglobal: %d queries, M=%d, K=%d in %.2f s", len(q), min(conf.m, ids.shape[1]), conf.k, t2 - t1)
    write_reranked_evaluation(
        ctx,
        "superglobal",
        ranking,
        scores,
        ids,
        lists,
        gnd,
        knn_path,
        timing=cost_timing(len(q), reads=t1 - t0, rerank=t2 - t1),
    )

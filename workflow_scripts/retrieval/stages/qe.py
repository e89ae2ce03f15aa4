"""The ``evaluate_qe`` stage: alpha query expansion and database-side augmentation on the global shortlist."""

from __future__ import annotations

import time
from typing import Any

from retrieval.evaluation.results import EvaluationContext, cost_timing, write_reranked_evaluation
from retrieval.methods.qe import expand
from retrieval.runtime import read_json
from retrieval.search.exact import topk_neighbours
from retrieval.stores.global_store import read_global, read_neighbours


def evaluate_qe_stage(
    ctx: EvaluationContext,
    query_global: str,
    db_global: str,
    knn_path: str,
    method: str,
    qe_cfg: dict[str, Any],
    dba_cfg: dict[str, Any] | None,
) -> None:
    """Alpha query expansion (``qe_cfg``: config ``aqe``), after alpha database augmentation when ``dba_cfg`` is
    given (config ``adba``; ``method`` ``adba``, else ``aqe``): the expanded queries search the (augmented) global
    descriptors ``(n, D)`` float32 again, evaluated next to the global shortlist in ``knn_path``. Augmenting the
    database is the work done once per database (``timing.offline_seconds``)."""

    t0 = time.time()
    q, db = read_global(query_global), read_global(db_global)
    base_ids, _, _ = read_neighbours(knn_path)
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    t1 = time.time()
    dbn = expand(q, db, None, dba_cfg)[1] if dba_cfg is not None else db  # once per database, not per query
    t2 = time.time()
    qn, _ = expand(q, dbn, qe_cfg, None)
    ids, sims = topk_neighbours(qn, dbn, len(dbn))  # the expanded query searches the database again
    t3 = time.time()
    write_reranked_evaluation(
        ctx,
        method,
        ids,
        sims,
        base_ids,
        lists,
        gnd,
        knn_path,
        timing=cost_timing(len(q), reads=t1 - t0, rerank=t3 - t2, offline=t2 - t1 if dba_cfg is not None else 0.0),
    )

"""The ``evaluate_qe`` stage: alpha query expansion and database-side augmentation on the global shortlist."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.evaluation.results import EvaluationContext, cost_timing, write_reranked_evaluation
from retrieval.features.vlad import l2_normalise
from retrieval.methods.qe import expand, expand_with
from retrieval.runtime import read_json
from retrieval.search.exact import stream_topk, topk_neighbours
from retrieval.stores.global_store import finite_rows, open_global, read_global, read_neighbours
from retrieval.stores.local_store import read_row_runs


def streamed_aqe(q: np.ndarray, db_path: str | Path, k: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Alpha query expansion of queries ``q`` (Nq, D) float32 over a global-descriptor file, streamed: the top-k
    search and the full ranking of the expanded queries read the database in blocks of at most 256 MiB, the
    expansion reads only the neighbours' rows. The result equals ``alpha_expand`` then ``topk_neighbours`` on the
    whole database in memory: ids (Nq, N) int64 and similarities (Nq, N) float32, best first (a full ranking)."""
    with open_global(db_path) as f:
        d = f["descriptors"]
        n_db = len(d)

        def read(s: int, e: int) -> np.ndarray:
            return finite_rows(db_path, d[s:e])

        k = min(k, n_db)
        qn = l2_normalise(np.asarray(q, np.float32))  # k = 0: as alpha_expand, the query itself
        if k > 0:
            nn, nn_sims = stream_topk(q, read, n_db, k, n_db)
            rows, inverse = np.unique(nn, return_inverse=True)
            pool = finite_rows(db_path, read_row_runs(d, rows))[inverse.reshape(nn.shape)]
            qn = expand_with(q, nn_sims, pool, alpha)
        return stream_topk(qn, read, n_db, n_db, n_db)  # the expanded query searches the database again


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
    database is the work done once per database (``timing.offline_seconds``).

    ``aqe`` streams the database file in blocks of at most 256 MiB (its searches and the expansion read only the
    neighbours' rows), so a million 8192-d descriptors (32 GB) are never held; ``adba`` searches the database
    against itself and holds it (README, "Large databases")."""

    t0 = time.time()
    q = read_global(query_global)
    base_ids, _, _ = read_neighbours(knn_path)
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    if dba_cfg is not None:
        db = read_global(db_global)
        t1 = time.time()
        dbn = expand(q, db, None, dba_cfg)[1]  # once per database, not per query
        t2 = time.time()
        qn, _ = expand(q, dbn, qe_cfg, None)
        ids, sims = topk_neighbours(qn, dbn, len(dbn))  # the expanded query searches the database again
    else:
        t1 = t2 = time.time()
        ids, sims = streamed_aqe(q, db_global, int(qe_cfg["k"]), float(qe_cfg["alpha"]))
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

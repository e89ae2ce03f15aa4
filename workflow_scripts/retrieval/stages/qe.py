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
from retrieval.stores.global_store import (
    check_dim,
    finite_rows,
    open_global,
    read_global,
    read_global_rows,
    read_neighbours,
)


def streamed_aqe(q: np.ndarray, db_path: str | Path, k: int, alpha: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Alpha query expansion of queries ``q`` (Nq, D) float32 over a global-descriptor file, streamed: the top-k
    search and the full ranking of the expanded queries each read the whole database in blocks of at most
    256 MiB, the expansion only the neighbours' rows. The ranking equals ``alpha_expand`` then
    ``topk_neighbours`` on the whole database in memory: ids (Nq, N) int64 and similarities (Nq, N) float32, best
    first (a full ranking), and the seconds spent reading the file. ValueError naming the file for a dimension
    that is not the queries'."""
    seconds = 0.0
    with open_global(db_path) as f:
        d = f["descriptors"]
        n_db = len(d)
        check_dim(db_path, d.shape[1], q.shape[1])

        def read(s: int, e: int) -> np.ndarray:
            nonlocal seconds
            tr = time.time()
            x = finite_rows(db_path, d[s:e])
            seconds += time.time() - tr
            return x

        k = min(k, n_db)
        qn = l2_normalise(np.asarray(q, np.float32))  # k = 0: as alpha_expand, the query itself
        if k > 0:
            nn, nn_sims = stream_topk(q, read, n_db, k, n_db)
            tr = time.time()
            pool = read_global_rows(db_path, nn)  # (Nq, k, D): only the neighbours' rows
            seconds += time.time() - tr
            qn = expand_with(q, nn_sims, pool, alpha)
        ids, sims = stream_topk(qn, read, n_db, n_db, n_db)  # the expanded query searches the database again
    return ids, sims, seconds


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

    ``aqe`` streams the database file (:func:`streamed_aqe`), so a million 8192-d descriptors (32 GB) are never
    held; ``adba`` searches the database against itself and holds it (README, "Large databases"). Reading the
    database counts as ``reads`` in the timing for both."""

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
        reads, offline, rerank = t1 - t0, t2 - t1, time.time() - t2
    else:
        t1 = time.time()
        ids, sims, db_reads = streamed_aqe(q, db_global, int(qe_cfg["k"]), float(qe_cfg["alpha"]))
        reads, offline, rerank = t1 - t0 + db_reads, 0.0, time.time() - t1 - db_reads
    write_reranked_evaluation(
        ctx,
        method,
        ids,
        sims,
        base_ids,
        lists,
        gnd,
        knn_path,
        timing=cost_timing(len(q), reads=reads, rerank=rerank, offline=offline),
    )

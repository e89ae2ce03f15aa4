"""The ``evaluate_qe`` stage: alpha query expansion and database-side augmentation on the global shortlist."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.evaluation.results import EvaluationContext, cost_timing, write_reranked_evaluation
from retrieval.featureless import drop_self
from retrieval.features.vlad import l2_normalise
from retrieval.methods.qe import expand_with
from retrieval.runtime import read_json
from retrieval.search.exact import stream_topk
from retrieval.stores.global_store import (
    BlockReader,
    block_rows,
    check_dim,
    global_writer,
    open_global,
    read_global,
    read_neighbours,
)


def streamed_aqe(
    q: np.ndarray, db_path: str | Path, k: int, alpha: float, depth: int | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Alpha query expansion of queries ``q`` (Nq, D) float32 over a global-descriptor file, streamed: the top-k
    search and the ranking of the expanded queries each read the whole database in blocks of at most
    256 MiB, the expansion only the neighbours' rows. The ranking equals ``alpha_expand`` then
    ``topk_neighbours`` on the whole database in memory: ids (Nq, depth) int64 and similarities (Nq, depth) float32,
    best first (``depth`` None: the full ranking, N), and the seconds spent reading the file. ValueError naming the
    file for a dimension that is not the queries'."""
    with open_global(db_path) as f:
        d = f["descriptors"]
        n_db = len(d)
        check_dim(db_path, d.shape[1], q.shape[1])
        read = BlockReader(db_path, d)
        k = min(k, n_db)
        qn = l2_normalise(np.asarray(q, np.float32))  # k = 0: as alpha_expand, the query itself
        if k > 0:
            nn, nn_sims = stream_topk(q, read, n_db, k, n_db)
            qn = expand_with(q, nn_sims, read.rows(nn), alpha)  # (Nq, k, D): only the neighbours' rows
        depth = n_db if depth is None else min(depth, n_db)
        ids, sims = stream_topk(qn, read, n_db, depth, n_db)  # the expanded query searches the database again
    return ids, sims, read.seconds


def streamed_adba(db_path: str | Path, out_path: str | Path, k: int, alpha: float) -> float:
    """Alpha database augmentation of a global-descriptor file (N, D) float32, streamed, written to ``out_path`` (a
    global-descriptor file of the same shape): every row expanded with its top-``k`` other rows, as ``alpha_expand``
    with ``exclude_self`` on the whole database in memory (a row's own match is dropped where it is among the top
    k + 1, else the last of them; an image without features stays zero and weighs nothing). Rows are augmented a
    block at a time (at most 256 MiB of float32), each block searching the whole file in blocks and reading only its
    neighbours' rows, so memory is about 1 GB at any N; the cost is N^2 D multiply-adds and N / block passes over the
    file. Returns the seconds spent reading it."""
    with open_global(db_path) as f:
        d = f["descriptors"]
        n_db, dim = (int(v) for v in d.shape)
        read = BlockReader(db_path, d)
        k = max(0, min(k, n_db - 1))
        rows = block_rows(n_db, dim)
        gather = max(1, rows // max(k, 1))  # rows whose (gather, k, D) neighbours fit in a block
        with global_writer(out_path, n_db, dim, method="adba") as out:
            for s in range(0, n_db, rows):
                x = read(s, min(n_db, s + rows))
                if k == 0:  # as alpha_expand: each vector normalised, nothing added
                    out[s : s + len(x)] = l2_normalise(x)
                    continue
                ids, sims = stream_topk(x, read, n_db, k + 1, n_db)
                ids, sims = drop_self(ids, sims, np.arange(s, s + len(x)))
                for c in range(0, len(x), gather):
                    pool = read.rows(ids[c : c + gather])  # (gather, k, D): the neighbours' rows
                    out[s + c : s + c + len(pool)] = expand_with(x[c : c + gather], sims[c : c + gather], pool, alpha)
    return read.seconds


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

    The expanded queries' ranking is as long as the global shortlist's (``knn.k``; the full ranking under the
    default ``knn.k: 0``): a folder searched with ``knn: {k: 1000}`` to bound memory got an N x N ranking here.
    Both stream the database file, so a million 8192-d descriptors (32 GB) are never held: ``aqe`` with
    :func:`streamed_aqe`; ``adba`` first writes the augmented database (:func:`streamed_adba`) to a hidden file
    beside ``ctx.out_json`` (``.{stem}.db_augmented.h5``, the database's size on disk, removed when the stage ends,
    or by the next attempt after a kill) and expands the queries against it. Reading the database counts as ``reads`` in the timing, except the augmentation's own reads, which
    are part of its once-per-database cost (``offline``)."""

    t0 = time.time()
    q = read_global(query_global)
    base_ids, _, _ = read_neighbours(knn_path)
    depth = base_ids.shape[1]
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    if dba_cfg is not None:
        out = Path(ctx.out_json)
        augmented = out.parent / f".{out.stem}.db_augmented.h5"
        augmented.unlink(missing_ok=True)  # a killed attempt's (SIGKILL skips the cleanup; the lock: no other writer)
        try:
            t1 = time.time()
            streamed_adba(db_global, augmented, int(dba_cfg["k"]), float(dba_cfg["alpha"]))  # once per database
            t2 = time.time()
            ids, sims, q_reads = streamed_aqe(q, augmented, int(qe_cfg["k"]), float(qe_cfg["alpha"]), depth)
        finally:
            augmented.unlink(missing_ok=True)
        reads, offline, rerank = t1 - t0 + q_reads, t2 - t1, time.time() - t2 - q_reads
    else:
        t1 = time.time()
        ids, sims, db_reads = streamed_aqe(q, db_global, int(qe_cfg["k"]), float(qe_cfg["alpha"]), depth)
        reads, offline, rerank = t1 - t0 + db_reads, 0.0, time.time() - t1 - db_reads
    n_db = len(lists["db"])
    # the neighbours used, as sv and superglobal record num_rerank_applied: a k beyond a small database takes all of
    # it (adba: all but the image itself), which the configuration alone did not say (a new user's trial)
    applied = {"aqe": min(int(qe_cfg["k"]), n_db)}
    if dba_cfg is not None:
        applied["adba"] = max(0, min(int(dba_cfg["k"]), n_db - 1))
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
        extra={"k_applied": applied},
    )

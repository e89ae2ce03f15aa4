"""The ``knn`` and ``import_nn`` stages: the first-stage shortlist of every query."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.featureless import NO_MATCH_SCORE, default_order, featureless_rows
from retrieval.runtime import read_lists
from retrieval.search.exact import stream_topk
from retrieval.search.ivfpq import ivfpq_search, plan_ivfpq
from retrieval.stores.ames_release import read_nn
from retrieval.stores.global_store import BlockReader, check_dim, open_global, read_global, write_neighbours

log = logging.getLogger(__name__)


def _exact_similarities(d, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """q . x for the returned ids (every id a database row), reading each query's rows in sorted order."""
    if ids.size and (ids.min() < 0 or ids.max() >= d.shape[0]):
        raise ValueError(f"neighbour ids outside the database's {d.shape[0]} rows")
    sims = np.empty(ids.shape, np.float32)
    for i, row in enumerate(ids):
        rows, inverse = np.unique(row, return_inverse=True)
        sims[i] = (d[rows].astype(np.float32) @ q[i].astype(np.float32))[inverse]
    return sims


def nearest_neighbours(
    query_path: str | Path,
    db_path: str | Path,
    out_path: str | Path,
    k: int,
    version: str,
    search: str = "exact",
    block: int = 100_000,
    ivfpq: dict[str, Any] | None = None,
    k_key: str | None = "knn.k",
) -> None:
    """k = 0 asks for the full ranking of the database, which the revisitop metrics need. The database is read in
    blocks of ``block`` rows: exact search merges each block's top k; ``ivfpq`` trains a compressed index on a
    sample, adds the blocks and searches it (a truncated shortlist: k > 0), planned by ``scale.plan_ivfpq``: with
    ``nlist: auto`` a database too small to train it gets exact search (logged, and recorded in the file's
    ``ivfpq_fallback`` attribute); an explicit configuration it cannot train is refused with the numbers. Every
    stored id is a database row (IVF-PQ's -1 "no result" never reaches the file), and IVF-PQ's candidates are stored
    with their exact similarities, best first. ``k_key``: the key ``k`` comes from, named in the warning when it is at
    least the database; None for a search of new photos (``search.k`` or ``sv.num_rerank``: a depth above a small
    collection is harmless there, and is logged as information)."""

    q = read_global(query_path)
    q_none = featureless_rows(q) if len(q) else np.zeros(0, bool)
    with open_global(db_path) as f:
        d = f["descriptors"]
        if len(q):  # numpy's "matmul: ... size 1024 is different from 512" named neither file (helper-99's trial)
            check_dim(db_path, d.shape[1], q.shape[1], query_path)
        n_db = d.shape[0]
        k_eff = n_db if k == 0 else min(k, n_db)
        if 0 < n_db <= k and k_key:
            log.warning("%s %d is at least the %d database images: the full ranking is stored", k_key, k, n_db)
        elif 0 < n_db <= k:
            log.info("a depth of %d: all %d collection images are ranked", k, n_db)
        read = BlockReader(db_path, d)  # checks each block finite and marks its rows without features
        db_none = read.featureless  # complete once a search has passed over every block

        t0 = time.time()
        extra: dict[str, Any] = {}
        if search == "ivfpq":
            if k == 0:
                raise ValueError(
                    "knn.search: ivfpq returns a truncated shortlist; set knn.k > 0 (the revisitop "
                    "metrics need knn.search: exact with knn.k: 0)"
                )
            plan = plan_ivfpq(n_db, d.shape[1], ivfpq or {})
            if "fallback" in plan:
                log.warning("knn.search: ivfpq with nlist auto: %s", plan["fallback"])
                search, extra = "exact", {"ivfpq_fallback": plan["fallback"]}
        if search == "exact":
            ids, sims = stream_topk(q, read, n_db, k_eff, block)
        elif search == "ivfpq":
            ids, stats = ivfpq_search(q, read, n_db, d.shape[1], ivfpq or {}, k_eff, block, seed=0, plan=plan)
            # the candidates re-sorted by their exact similarity (faiss returns them in PQ-approximate order, so the
            # stored shortlist was not best first: the re-rankers' fusion, tie-breaks and kept tail read it so)
            sims = _exact_similarities(d, q, ids)
            sims[db_none[ids]] = NO_MATCH_SCORE  # as in exact search
            order = np.argsort(-sims, axis=1, kind="stable")
            ids, sims = np.take_along_axis(ids, order, 1), np.take_along_axis(sims, order, 1)
            if q_none.any():
                ids[q_none], sims[q_none] = default_order(db_none)[: ids.shape[1]], NO_MATCH_SCORE
            extra = {"ivfpq": json.dumps(stats)}
        else:
            raise ValueError(f"knn.search: {search!r} is not one of exact, ivfpq")
    seconds = time.time() - t0
    if q_none.any() or db_none.any():
        log.warning(
            "%d of %d queries and %d of %d database images have no features: they are never a match (ranked "
            "last, score -inf)",
            int(q_none.sum()),
            len(q_none),
            int(db_none.sum()),
            n_db,
        )
    log.info("knn (%s): %d queries x %d database, k=%d in %.3f s", search, len(q), n_db, k_eff, seconds)
    write_neighbours(
        out_path,
        ids,
        sims,
        k=k_eff,
        n_db=n_db,
        version=version,
        search_seconds=seconds,
        search=search,
        featureless=(q_none, db_none),
        **extra,
    )


def import_nn(nn_path: str | Path, lists_path: str | Path, out_path: str | Path, version: str) -> None:
    """An AMES ``nn_*.pkl`` shortlist as our neighbours file, after checking it against the image lists."""

    lists = read_lists(lists_path)
    n_db = len(lists["db"])
    ids, sims = read_nn(nn_path, len(lists["query"]), n_db)
    log.info(
        "imported %s: %d queries x top %d of %d database images%s",
        nn_path,
        ids.shape[0],
        ids.shape[1],
        n_db,
        "" if ids.shape[1] == n_db else " (a truncated shortlist: no revisitop mAP from it)",
    )
    write_neighbours(
        out_path,
        ids,
        sims,
        k=ids.shape[1],
        n_db=n_db,
        version=version,
        search="imported",
        source=str(nn_path),
        search_seconds=0.0,
    )

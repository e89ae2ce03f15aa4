"""Compressed first-stage search with faiss IVF-PQ: planning nlist / PQ for the database size (faiss's
guidance, with an exact-search fallback) and the blockwise search."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import numpy as np

from retrieval.stores.global_store import block_rows

log = logging.getLogger(__name__)


# faiss's guidance for IVF indexes: nlist about 4-16 x sqrt(N) inverted lists, and k-means wants at least 39 training
# points per centroid (faiss's ``min_points_per_centroid``: below it faiss warns that training is unreliable). The
# PQ codebooks are k-means with 2^nbits centroids per sub-space, so the same floor applies to them.
NLIST_PER_SQRT_N = 4


MIN_POINTS_PER_CENTROID = 39


def plan_ivfpq(n_db: int, d: int | None, cfg: dict[str, Any], key: str = "knn.ivfpq") -> dict[str, Any]:
    """The IVF-PQ index a database of ``n_db`` vectors of dimension ``d`` gets from ``cfg`` (keys nlist, m, nbits,
    nprobe, train), or why it gets exact search instead.

    ``nlist: auto`` (the default) takes ``round(4 sqrt(n_db))`` lists (faiss's guidance 4-16 x sqrt(N), its lower end
    so that training needs the fewest vectors) and trains on ``max(train, 39 nlist, 39 2^nbits)`` database vectors
    (capped at n_db); when the database holds fewer vectors than that (below about 24,000 images with 8-bit codes)
    IVF-PQ cannot be trained sensibly and the plan is exact search, with the reason (``{"fallback": reason}``).
    An explicit nlist is kept as asked, trained on ``min(train, n_db)`` vectors; what faiss cannot do at all is
    refused with the numbers (ValueError): fewer training vectors than lists or than 2^nbits codewords, more lists
    than database vectors, ``m`` not dividing ``d``. Fewer than 39 per centroid is allowed but logged. ``d`` None:
    the dimension is not known yet (the plan's check while the DAG is built); everything but ``m``'s division is
    checked.
    Returns ``{"nlist", "m", "nbits", "nprobe", "n_train"}`` (plain ints) or ``{"fallback": str}``. ``key``: where
    ``cfg`` comes from in the configuration, named in the errors (``benchmark.scale.ivfpq`` for the scale benchmark)."""
    m, nbits = int(cfg["m"]), int(cfg["nbits"])
    if d is not None and d % m:
        raise ValueError(
            f"{key}.m = {m} does not divide the descriptor dimension {d} (PQ splits each vector into "
            f"m equal sub-vectors); choose a divisor of {d}"
        )
    codewords = 2**nbits
    if cfg["nlist"] == "auto":
        nlist = max(1, round(NLIST_PER_SQRT_N * math.sqrt(n_db)))
        need = MIN_POINTS_PER_CENTROID * max(nlist, codewords)
        if n_db < need:
            return {
                "fallback": f"IVF-PQ needs at least {need} training vectors ({MIN_POINTS_PER_CENTROID} per centroid "
                f"for nlist {nlist} = {NLIST_PER_SQRT_N} x sqrt({n_db}) lists and {codewords} codewords "
                f"of {nbits} bits) but the database holds {n_db}: exact search instead"
            }
        n_train = min(n_db, max(int(cfg["train"]), need))
    else:
        nlist = int(cfg["nlist"])
        n_train = min(n_db, int(cfg["train"]))
        if nlist > n_db or n_train < nlist or n_train < codewords:
            # the way out names what limits (it advised lowering an nlist that was not the limit, or raising a train
            # beyond the database: a new user's trial)
            ways = []
            if nlist > n_train:
                ways.append(f"lower {key}.nlist to at most {n_train}")
            if codewords > n_train:
                ways.append(f"lower {key}.nbits to at most {max(1, int(math.log2(n_train)))}")
            if n_train < n_db and int(cfg["train"]) < n_db:
                ways.append(f"raise {key}.train (up to the database's {n_db})")
            if key == "knn.ivfpq":
                ways.append("use nlist: auto (it falls back to exact search on small databases) or knn.search: exact")
            raise ValueError(
                f"{key} cannot be trained on this database: nlist {nlist} lists and {codewords} "
                f"codewords ({nbits} bits) from {n_train} training vectors (train {cfg['train']}, "
                f"database {n_db}); faiss needs at least as many training vectors as lists and as "
                f"codewords, and {MIN_POINTS_PER_CENTROID} per centroid to train well: {'; or '.join(ways)}"
            )
        if n_train < MIN_POINTS_PER_CENTROID * max(nlist, codewords):
            log.warning(
                "IVF-PQ: %d training vectors for %d lists and %d codewords is below faiss's %d per centroid; "
                "the index will be poorly trained",
                n_train,
                nlist,
                codewords,
                MIN_POINTS_PER_CENTROID,
            )
    if int(cfg["nprobe"]) > nlist:  # every list is probed: exact, at IVF-PQ's cost (recorded as nlist)
        log.info("%s.nprobe %d is above the %d lists: all %d are probed", key, int(cfg["nprobe"]), nlist, nlist)
    return {"nlist": nlist, "m": m, "nbits": nbits, "nprobe": min(int(cfg["nprobe"]), nlist), "n_train": n_train}


def ivfpq_search(
    q: np.ndarray,
    read_block: Callable[[int, int], np.ndarray],
    n_db: int,
    d: int,
    cfg: dict[str, Any],
    k: int,
    block: int,
    seed: int,
    key: str = "knn.ivfpq",
    plan: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Top-k database ids (Nq, k) int64 of queries q (Nq, d) from a faiss IVF-PQ index (inner product) planned by
    :func:`plan_ivfpq` (a ``{"fallback"}`` plan is the caller's to handle; here it is a ValueError). ``plan``: the
    caller's own plan of ``cfg`` for this database, used as it is (planning again logged its warnings twice).

    faiss returns id -1 where the ``nprobe`` probed lists hold fewer than k vectors; such a query is searched again
    with nprobe doubled until its list is full (at nprobe = nlist every vector is probed, so k <= n_db always
    fills it). Every returned id is a database row; ``widened_queries`` in the stats counts the re-searched."""
    import faiss  # noqa: PLC0415

    plan = plan_ivfpq(n_db, d, cfg, key) if plan is None else plan
    if "fallback" in plan:
        raise ValueError(f"{key}: {plan['fallback']}")
    if not 1 <= k <= n_db:
        raise ValueError(f"IVF-PQ: k = {k} neighbours asked of a database of {n_db}")
    nlist = plan["nlist"]
    block = block_rows(block, d)
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFPQ(quantizer, d, nlist, plan["m"], plan["nbits"], faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    n_train = plan["n_train"]
    rows = np.sort(rng.choice(n_db, n_train, replace=False))
    # filled block by block in place: the training set is the one full-size array (1.6 GB at 50k x 8192-d)
    train = np.empty((n_train, d), np.float32)
    for s in range(0, n_db, block):
        lo, hi = np.searchsorted(rows, [s, s + block])
        if hi > lo:
            train[lo:hi] = read_block(s, min(n_db, s + block))[rows[lo:hi] - s]
    t0 = time.perf_counter()
    index.train(train)
    t1 = time.perf_counter()
    for s in range(0, n_db, block):
        index.add(np.ascontiguousarray(read_block(s, min(n_db, s + block)), np.float32))
    t2 = time.perf_counter()
    q = np.ascontiguousarray(q, np.float32)
    index.nprobe = plan["nprobe"]
    _, ids = index.search(q, k)
    short = np.flatnonzero((ids < 0).any(1))
    widened, nprobe = len(short), plan["nprobe"]
    while len(short):
        nprobe = min(nlist, 2 * nprobe)
        index.nprobe = nprobe
        _, again = index.search(q[short], k)
        ids[short] = again
        short = short[(again < 0).any(1)]
        if len(short) and nprobe == nlist:
            raise RuntimeError(f"IVF-PQ returned fewer than {k} of {n_db} vectors with every list probed")
    t3 = time.perf_counter()
    if widened:
        log.info(
            "IVF-PQ: %d of %d queries found fewer than %d neighbours in %d lists; searched again with up to %d",
            widened,
            len(q),
            k,
            plan["nprobe"],
            nprobe,
        )
    code_bytes = index.code_size + 8  # PQ code + the 64-bit id in the inverted list
    return ids, {
        "train_seconds": round(t1 - t0, 2),
        "add_seconds": round(t2 - t1, 2),
        "search_ms_per_query": round(1000 * (t3 - t2) / len(q), 3),
        "bytes_per_image": code_bytes,
        "n_train": n_train,
        "nlist": nlist,
        "nprobe": plan["nprobe"],
        "widened_queries": int(widened),
        "max_nprobe": int(nprobe),
    }

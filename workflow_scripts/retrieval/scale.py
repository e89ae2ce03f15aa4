"""Large databases: exact search streamed in blocks, compressed search (IVF-PQ) with its recall, and a benchmark that
simulates an N-image database from real descriptors.

The simulated database resamples the dataset's real descriptors with noise so that recall and re-ranking read
real-looking data: global descriptor i is ``normalise(real[i mod n] + noise * N(0, I) / sqrt(D))``, and its
binary AMES codes are the real image's packed codes with each bit flipped with probability ``bit_flip``. Everything
is generated, written and searched in blocks, so memory follows the block size, not N.

AP on truncated rankings: a compressed search returns only the top k; it is compared with exact search by
recall@k (the fraction of the exact top k it returns). The revisitop mAP in this project always uses full
rankings from exact search.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

log = logging.getLogger(__name__)


def stream_topk(q: np.ndarray, read_block: Callable[[int, int], np.ndarray], n_db: int, k: int, block: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of queries q (Nq, D) over a database read in blocks ``read_block(start, stop)``.

    A full ranking (k >= n_db, what the revisitop metrics need) fills the (Nq, n_db) similarity matrix block by
    block and sorts it once (ties by database order): at 1M images and 70 queries 2x faster than merging per
    block, and its memory is that matrix. A shortlist (k < n_db) keeps the running top k, merged per block.

    All-zero rows are images without features (featureless.py): a database row never outranks a row with
    features (similarity -inf, last in database order) and a query row gets the database order."""
    import faiss  # noqa: PLC0415

    from .featureless import NO_MATCH_SCORE, featureless_rows, rank_featureless_last  # noqa: PLC0415

    q = np.ascontiguousarray(q, np.float32)
    k = min(k, n_db)
    q_none, db_none = featureless_rows(q), np.zeros(n_db, bool)
    if k == n_db:
        sims_all = np.empty((len(q), n_db), np.float32)
        for s in range(0, n_db, block):
            x = np.ascontiguousarray(read_block(s, min(n_db, s + block)), np.float32)
            db_none[s:s + len(x)] = featureless_rows(x)
            sims_all[:, s:s + len(x)] = q @ x.T
        sims_all[:, db_none] = NO_MATCH_SCORE
        order = np.argsort(-sims_all, axis=1, kind="stable")
        best_i, best_s = order.astype(np.int64), np.take_along_axis(sims_all, order, 1)
        return rank_featureless_last(best_i, best_s, q_none, db_none, k)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, n_db, block):
        x = np.ascontiguousarray(read_block(s, min(n_db, s + block)), np.float32)
        none = featureless_rows(x)
        db_none[s:s + len(x)] = none
        rows = np.flatnonzero(~none)  # only images with features compete for the top k
        if not len(rows):
            continue
        xs = x[rows] if none.any() else x
        sims, ids = faiss.knn(q, xs, min(k, len(rows)), metric=faiss.METRIC_INNER_PRODUCT)
        cand_s, cand_i = np.concatenate([best_s, sims], 1), np.concatenate([best_i, rows[ids] + s], 1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return rank_featureless_last(best_i, best_s, q_none, db_none, k)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(np.intersect1d(a[:k], e)) / k for a, e in zip(approx, exact)]))


def source_recall(approx: np.ndarray, exact: np.ndarray, n_real: int) -> float:
    """Recall of the real images behind the exact top k (row i resamples real image i mod n_real): the simulated
    database holds noisy copies of each real image, and which copy comes first is noise."""
    return float(np.mean([len(np.intersect1d(a % n_real, e % n_real)) / len(np.unique(e % n_real))
                          for a, e in zip(approx, exact)]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def simulate(out_global: Path, out_codes: Path | None, real_global: np.ndarray, real_codes: np.ndarray | None,
             real_counts: np.ndarray | None, n: int, noise: float, bit_flip: float, block: int, seed: int) -> None:
    """Write an N-image global store (float16) and, if codes are given, an AMES binary store, block by block."""
    rng = np.random.default_rng(seed)
    n_real, d = real_global.shape
    with h5py.File(out_global, "w") as fg:
        g = fg.create_dataset("descriptors", shape=(n, d), dtype=np.float16, chunks=(min(n, 4096), d))
        fc = h5py.File(out_codes, "w") if real_codes is not None else None
        try:
            if fc is not None:
                k, w = real_codes.shape[1:]
                c = fc.create_dataset("codes", shape=(n, k, w), dtype=np.uint8, chunks=(1, k, w))
                cnt = fc.create_dataset("count", shape=(n,), dtype=np.int32)
                fc.attrs.update({"kind": "ames_db", "method": "ames_binary", "K": k, "bits": 8 * w, "simulated": True})
            for s in range(0, n, block):
                e = min(n, s + block)
                src = np.arange(s, e) % n_real
                x = real_global[src] + noise * rng.standard_normal((e - s, d), dtype=np.float32) / np.sqrt(d)
                g[s:e] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
                if fc is not None:
                    for s2 in range(s, e, 2048):  # bit flips drawn in small pieces: memory stays bounded
                        e2 = min(e, s2 + 2048)
                        src2 = np.arange(s2, e2) % n_real
                        flips = np.packbits(rng.random((e2 - s2, k, 8 * w), dtype=np.float32) < bit_flip, axis=-1)
                        valid = (np.arange(k)[None, :] < real_counts[src2][:, None])[..., None]
                        c[s2:e2] = np.where(valid, real_codes[src2] ^ flips, 0)
                        cnt[s2:e2] = real_counts[src2]
        finally:
            if fc is not None:
                fc.close()


# faiss's guidance for IVF indexes: nlist about 4-16 x sqrt(N) inverted lists, and k-means wants at least 39 training
# points per centroid (faiss's ``min_points_per_centroid``: below it faiss warns that training is unreliable). The
# PQ codebooks are k-means with 2^nbits centroids per sub-space, so the same floor applies to them.
NLIST_PER_SQRT_N = 4
MIN_POINTS_PER_CENTROID = 39


def plan_ivfpq(n_db: int, d: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """The IVF-PQ index a database of ``n_db`` vectors of dimension ``d`` gets from ``cfg`` (keys nlist, m, nbits,
    nprobe, train), or why it gets exact search instead.

    ``nlist: auto`` (the default) takes ``round(4 sqrt(n_db))`` lists (faiss's guidance 4-16 x sqrt(N), its lower end
    so that training needs the fewest vectors) and trains on ``max(train, 39 nlist, 39 2^nbits)`` database vectors
    (capped at n_db); when the database holds fewer vectors than that (below about 24,000 images with 8-bit codes)
    IVF-PQ cannot be trained sensibly and the plan is exact search, with the reason (``{"fallback": reason}``).
    An explicit nlist is kept as asked, trained on ``min(train, n_db)`` vectors; what faiss cannot do at all is
    refused with the numbers (ValueError): fewer training vectors than lists or than 2^nbits codewords, more lists
    than database vectors, ``m`` not dividing ``d``. Fewer than 39 per centroid is allowed but logged.
    Returns ``{"nlist", "m", "nbits", "nprobe", "n_train"}`` (plain ints) or ``{"fallback": str}``."""
    m, nbits = int(cfg["m"]), int(cfg["nbits"])
    if d % m:
        raise ValueError(f"knn.ivfpq.m = {m} does not divide the descriptor dimension {d} (PQ splits each vector into "
                         f"m equal sub-vectors); choose a divisor of {d}")
    codewords = 2 ** nbits
    if cfg["nlist"] == "auto":
        nlist = max(1, round(NLIST_PER_SQRT_N * math.sqrt(n_db)))
        need = MIN_POINTS_PER_CENTROID * max(nlist, codewords)
        if n_db < need:
            return {"fallback": f"IVF-PQ needs at least {need} training vectors ({MIN_POINTS_PER_CENTROID} per centroid "
                                f"for nlist {nlist} = {NLIST_PER_SQRT_N} x sqrt({n_db}) lists and {codewords} codewords "
                                f"of {nbits} bits) but the database holds {n_db}: exact search instead"}
        n_train = min(n_db, max(int(cfg["train"]), need))
    else:
        nlist = int(cfg["nlist"])
        n_train = min(n_db, int(cfg["train"]))
        if nlist > n_db or n_train < nlist or n_train < codewords:
            raise ValueError(f"knn.ivfpq cannot be trained on this database: nlist {nlist} lists and {codewords} "
                             f"codewords ({nbits} bits) from {n_train} training vectors (train {cfg['train']}, "
                             f"database {n_db}); faiss needs at least as many training vectors as lists and as "
                             f"codewords, and {MIN_POINTS_PER_CENTROID} per centroid to train well. Use nlist: auto "
                             "(it falls back to exact search on small databases) or knn.search: exact")
        if n_train < MIN_POINTS_PER_CENTROID * max(nlist, codewords):
            log.warning("IVF-PQ: %d training vectors for %d lists and %d codewords is below faiss's %d per centroid; "
                        "the index will be poorly trained", n_train, nlist, codewords, MIN_POINTS_PER_CENTROID)
    return {"nlist": nlist, "m": m, "nbits": nbits, "nprobe": min(int(cfg["nprobe"]), nlist), "n_train": n_train}


def ivfpq_search(q: np.ndarray, read_block: Callable[[int, int], np.ndarray], n_db: int, d: int, cfg: dict[str, Any],
                 k: int, block: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Top-k database ids (Nq, k) int64 of queries q (Nq, d) from a faiss IVF-PQ index (inner product) planned by
    :func:`plan_ivfpq` (a ``{"fallback"}`` plan is the caller's to handle; here it is a ValueError).

    faiss returns id -1 where the ``nprobe`` probed lists hold fewer than k vectors; such a query is searched again
    with nprobe doubled until its list is full (at nprobe = nlist every vector is probed, so k <= n_db always
    fills it). Every returned id is a database row; ``widened_queries`` in the stats counts the re-searched."""
    import faiss  # noqa: PLC0415

    plan = plan_ivfpq(n_db, d, cfg)
    if "fallback" in plan:
        raise ValueError(plan["fallback"])
    if not 1 <= k <= n_db:
        raise ValueError(f"IVF-PQ: k = {k} neighbours asked of a database of {n_db}")
    nlist = plan["nlist"]
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFPQ(quantizer, d, nlist, plan["m"], plan["nbits"], faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    n_train = plan["n_train"]
    rows = np.sort(rng.choice(n_db, n_train, replace=False))
    train = np.concatenate([read_block(s, min(n_db, s + block))[rows[(rows >= s) & (rows < s + block)] - s]
                            for s in range(0, n_db, block)]).astype(np.float32)
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
        log.info("IVF-PQ: %d of %d queries found fewer than %d neighbours in %d lists; searched again with up to %d",
                 widened, len(q), k, plan["nprobe"], nprobe)
    code_bytes = index.code_size + 8  # PQ code + the 64-bit id in the inverted list
    return ids, {"train_seconds": round(t1 - t0, 2), "add_seconds": round(t2 - t1, 2),
                 "search_ms_per_query": round(1000 * (t3 - t2) / len(q), 3), "bytes_per_image": code_bytes,
                 "n_train": n_train, "nlist": nlist, "nprobe": plan["nprobe"], "widened_queries": int(widened),
                 "max_nprobe": int(nprobe)}


def scale_benchmark(query_global: str, db_global: str, binary_model: str | None, binary_store: str | None,
                    query_local: str | None, out_json: str, work_dir: str, cfg: dict[str, Any], q_desc: int,
                    db_desc: int, device: str) -> dict[str, Any]:
    from .global_store import read_global  # noqa: PLC0415
    from .runtime import write_json  # noqa: PLC0415

    n, block, k, seed = int(cfg["n_db"]), int(cfg["block"]), int(cfg["k"]), int(cfg["seed"])
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    q, real = read_global(query_global), read_global(db_global)
    real_codes = real_counts = None
    if binary_store:
        with h5py.File(binary_store, "r") as f:
            real_codes, real_counts = f["codes"][:], f["count"][:]
    gpath, cpath = work / "global.h5", work / "codes.h5"
    out: dict[str, Any] = {"n_db": n, "n_queries": len(q), "dim": int(real.shape[1]), "block": block, "k": k,
                           "resampled_from": db_global, "noise": cfg["noise"], "bit_flip": cfg["bit_flip"]}
    try:
        t0 = time.perf_counter()
        simulate(gpath, cpath if real_codes is not None else None, real, real_codes, real_counts, n,
                 float(cfg["noise"]), float(cfg["bit_flip"]), block, seed)
        out["simulate_seconds"] = round(time.perf_counter() - t0, 2)
        fg = h5py.File(gpath, "r")
        read = lambda s, e: fg["descriptors"][s:e]  # noqa: E731
        t0 = time.perf_counter()
        exact_ids, _ = stream_topk(q, read, n, k, block)
        t_exact = time.perf_counter() - t0
        out["exact"] = {"search_ms_per_query": round(1000 * t_exact / len(q), 3), "seconds": round(t_exact, 3),
                        "global_bytes_per_image": int(real.shape[1] * 2)}
        log.info("exact search over %d: %.1f ms/query", n, 1000 * t_exact / len(q))
        ivf_ids, ivf = ivfpq_search(q, read, n, real.shape[1], cfg["ivfpq"], k, block, seed)
        n_real = len(real)
        out["ivfpq"] = {**cfg["ivfpq"], **ivf, f"recall@{k}": round(recall_at_k(ivf_ids, exact_ids), 4),
                        "recall@10": round(recall_at_k(ivf_ids[:, :10], exact_ids[:, :10]), 4),
                        f"source_recall@{k}": round(source_recall(ivf_ids, exact_ids, n_real), 4),
                        "source_recall@10": round(source_recall(ivf_ids[:, :10], exact_ids[:, :10], n_real), 4),
                        "note": "recall: the exact top-k rows returned; source_recall: the real images behind the exact "
                                "top-k found through any of their copies (the database resamples real images)"}
        log.info("IVF-PQ: recall@%d %.3f", k, out["ivfpq"][f"recall@{k}"])
        fg.close()
        if real_codes is not None:
            size = cpath.stat().st_size
            out["binary_store"] = {"K": int(real_codes.shape[1]), "file_bytes": size,
                                   "bytes_per_image": round(size / n, 1),
                                   "payload_bytes_per_image": int(real_codes.shape[1] * real_codes.shape[2] + 4),
                                   "bytes_per_image_at_600": 600 * real_codes.shape[2] + 4}
            out["rerank"] = _rerank_timing(binary_model, cpath, query_local, exact_ids, cfg, q_desc, db_desc, device)
    finally:
        for p in (gpath, cpath):
            p.unlink(missing_ok=True)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["goals"] = {"peak_rss_below_4GB": out["peak_rss_mb"] < 4096,
                    "binary_store_at_most_10KB_per_image_at_600": out.get("binary_store", {}).get("bytes_per_image_at_600", 0) <= 10_000}
    write_json(out_json, out)
    return out


def _rerank_timing(model_path, codes_path, query_local, exact_ids, cfg, q_desc, db_desc, device) -> dict[str, Any]:
    """Binary AMES re-ranking of the top num_rerank of a few queries, reading only shortlisted rows."""
    from .ames import load_checkpoint  # noqa: PLC0415
    from .ames_rerank import compute_logits  # noqa: PLC0415
    from .ames_store import decode  # noqa: PLC0415
    from .local_store import open_local  # noqa: PLC0415

    model, _ = load_checkpoint(str(model_path))
    model.eval()
    nq, kr = int(cfg["rerank_queries"]), int(cfg["num_rerank"])
    with open_local(query_local) as f:
        qd, qc = f["descriptors"][:nq, :q_desc], f["count"][:nq]
    pairs = [np.unique(r[:kr]) for r in exact_ids[:nq]]
    reads = []
    with h5py.File(codes_path, "r") as f:
        def reader(rows):
            t = time.perf_counter()
            payload, counts = f["codes"][rows, :db_desc], f["count"][rows]
            reads.append(time.perf_counter() - t)
            return decode(model, payload, device), counts
        t0 = time.perf_counter()
        compute_logits(model, qd, qc, reader, pairs, q_desc, db_desc, batch=128, device=device, prepared=True)
        total = time.perf_counter() - t0
    return {"queries": nq, "num_rerank": kr, "ms_per_query": round(1000 * total / nq, 1),
            "read_ms_per_query": round(1000 * sum(reads) / nq, 2), "device": device}

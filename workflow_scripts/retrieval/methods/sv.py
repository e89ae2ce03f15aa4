"""Spatial verification (DELG-style): the classical local-feature re-ranker AMES is measured against.

For each query and each of the top ``num_rerank`` images of its global shortlist: ratio-tested nearest-neighbour
matches of the local descriptors, made one-to-one (a database keypoint serves at most one query keypoint, the
most similar; without this, "hub" keypoints inflate inlier counts on unrelated images), then RANSAC (OpenCV,
affine by default or a homography) on the keypoint positions; the shortlist is re-sorted by inlier count, the
global score breaking ties, and the rest of the ranking keeps the global order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np

from retrieval.runtime import Progress
from retrieval.stores.local_store import read_row_runs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SVConfig:
    """Spatial verification's settings (config ``sv``): the top ``num_rerank`` of each shortlist are verified with
    the strongest ``q_desc`` / ``db_desc`` descriptors of each image; matches pass Lowe's ratio test (Lowe, IJCV
    2004) at ``ratio``; RANSAC fits ``model`` with a reprojection ``threshold`` in pixels (DELG's 20, Cao et al.,
    ECCV 2020, on revisitop's images of at most 1024 px) of the database image downscaled to a long side of at
    most ``threshold_side`` (None: of the original image; see :func:`pixel_thresholds`), ``max_iters`` iterations
    at ``confidence``; ``seed`` seeds OpenCV's RANSAC (a process-wide seed: ``cv2.setRNGSeed``)."""

    num_rerank: int = 100
    q_desc: int = 1000  # descriptors per image used (strongest first; capped by what was extracted)
    db_desc: int = 1000
    ratio: float = 0.8  # Lowe's ratio on descriptor distances (1.0: off)
    model: str = "affine"  # affine | homography
    threshold: float = 20.0  # RANSAC reprojection threshold in pixels at threshold_side (DELG: 20)
    threshold_side: int | None = 1024  # its pixels: those of the image downscaled to this long side (a fixed size)
    max_iters: int = 1000
    confidence: float = 0.999
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ValueError(f"sv.threshold must be above 0 pixels, got {self.threshold}")
        if self.threshold_side is not None and not self.threshold_side >= 1:
            raise ValueError(f"sv.threshold_side must be at least 1 pixel or null, got {self.threshold_side}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict of their fields (:func:`dataclasses.asdict`)."""
        return asdict(self)


def ratio_matches(q: np.ndarray, d: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches (query indices, database indices), two (n_matches,) int64 arrays, of L2-normalised
    descriptors ``q`` (n, D) and ``d`` (m, D) float that pass Lowe's ratio test (Lowe, IJCV 2004) at ``ratio``
    (1.0: no test).

    Each query descriptor proposes its nearest database descriptor if its distance is below ``ratio`` times the
    distance to the second nearest; among proposals for the same database descriptor only the closest is kept.
    One pair at a time: the reference ``ratio_matches_many`` is tested against."""
    if len(q) == 0 or len(d) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s = q.astype(np.float32) @ d.astype(np.float32).T
    dist2 = np.maximum(2.0 - 2.0 * s, 0.0)
    if d.shape[0] >= 2:
        two = np.argpartition(dist2, 1, axis=1)[:, :2]
        d_two = np.take_along_axis(dist2, two, axis=1)
        order = np.argsort(d_two, axis=1)
        nn = np.take_along_axis(two, order[:, :1], axis=1)[:, 0]
        d1, d2 = np.take_along_axis(d_two, order, axis=1).T
        ok = np.sqrt(d1) < ratio * np.sqrt(d2) if ratio < 1.0 else np.ones(len(q), bool)
    else:
        nn, d1 = np.zeros(len(q), np.int64), dist2[:, 0]
        ok = np.ones(len(q), bool)
    qi = np.flatnonzero(ok)
    return _one_to_one(qi, nn[qi], d1[qi])


def _one_to_one(qi: np.ndarray, di: np.ndarray, dd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each database keypoint keep the proposal at the smallest distance ``dd`` (ties: the first query index)."""
    order = np.lexsort((dd, di))
    first = np.ones(len(order), bool)
    first[1:] = di[order][1:] != di[order][:-1]
    keep = order[first]
    return qi[keep], di[keep]


def ratio_matches_many(
    q: np.ndarray,
    d: np.ndarray,
    d_count: np.ndarray,
    ratio: float,
    chunk_entries: int = 1 << 22,
    work: Any = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``ratio_matches`` of one query against m database images at once: one matrix product and a top-2 per image.

    q: (Qn, D) float32 L2-normalised query descriptors (the real ones only); d: (m, T, D) float32 database
    descriptors, image i's first ``d_count[i]`` rows real. Returns per image the one-to-one matches (query index,
    database index), int64 arrays. Images are multiplied in groups of at most about ``chunk_entries`` similarities
    (16 MB of float32 by default: 1000 x 1000-descriptor products ran at 100-110 GFLOP/s in groups of 4-8 images and
    at 47-62 in groups of 33, whose 132 MB output is written to fresh memory; README, "Speed"). Distances are computed
    as in ``ratio_matches`` (max(2 - 2 s, 0) from the similarity s), so the same matches come out up to the rounding
    of the matrix product. ``work``: a float32 torch tensor the products are written into (``verify_shortlists``
    passes one for its whole run); without it, or when too small, one is allocated for the call."""
    import torch  # noqa: PLC0415

    m, t, dim = d.shape
    qn = len(q)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if qn == 0 or m == 0:
        return [empty] * m
    qt = torch.from_numpy(np.ascontiguousarray(q, np.float32))
    dt = torch.from_numpy(np.ascontiguousarray(d, np.float32))
    d_count = np.asarray(d_count, np.int64)
    step = max(1, chunk_entries // max(1, qn * t))  # images per product: bounds its memory
    # the products are written into ``work`` (float32, reused across calls when given, else one per call): a fresh
    # product per group, freed while the (small) matches of earlier calls stay allocated, fragmented the heap so
    # that memory grew by about 45 MB per call (3.1 GB for 43 photos; README, "Spatial verification")
    if work is None or work.numel() < qn * min(step, m) * t:
        work = torch.empty(qn * min(step, m) * t)
    tops, idxs = [], []
    for a in range(0, m, step):
        b = min(m, a + step)
        out = work[: qn * (b - a) * t].view(qn, (b - a) * t)
        s = torch.mm(qt, dt[a:b].reshape(-1, dim).T, out=out).view(qn, b - a, t)  # (Qn, images, T) similarities
        # padded descriptors are never a neighbour; only their columns are written (a whole-block mask cost as
        # much as the top-2)
        for j in np.flatnonzero(d_count[a:b] < t):
            s[:, j, int(d_count[a + j]) :] = float("-inf")
        top, idx = torch.topk(s, min(2, t), dim=-1)  # (Qn, images, 2): the nearest two by distance
        tops.append(top)
        idxs.append(idx)
    dist = np.maximum(2.0 - 2.0 * torch.cat(tops, 1).numpy(), 0.0)
    idx = torch.cat(idxs, 1).numpy()
    out = []
    for i in range(m):
        n = int(d_count[i])
        if n == 0:
            out.append(empty)
            continue
        d1 = dist[:, i, 0]
        if n >= 2 and ratio < 1.0:
            ok = np.sqrt(d1) < ratio * np.sqrt(dist[:, i, 1])
            qi = np.flatnonzero(ok)
        else:
            qi = np.arange(qn)
        out.append(_one_to_one(qi, idx[qi, i, 0].astype(np.int64), d1[qi]))
    return out


def ransac_inliers(
    src: np.ndarray, dst: np.ndarray, model: str, threshold: float, max_iters: int, confidence: float
) -> int:
    """Inliers of the best affine transform / homography (OpenCV's RANSAC) mapping ``src`` to ``dst``, matched
    keypoint positions (n, 2) in pixels: 0 when too few points (3 for affine, 4 for a homography). ``threshold``:
    the reprojection error in pixels. ValueError for another ``model``."""
    src = np.ascontiguousarray(src, np.float32).reshape(-1, 1, 2)
    dst = np.ascontiguousarray(dst, np.float32).reshape(-1, 1, 2)
    if model == "affine":
        if len(src) < 3:
            return 0
        _, mask = cv2.estimateAffine2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=max_iters, confidence=confidence
        )
    elif model == "homography":
        if len(src) < 4:
            return 0
        _, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=max_iters, confidence=confidence)
    else:
        raise ValueError(f"sv.model must be 'affine' or 'homography', not {model!r}")
    return 0 if mask is None else int(mask.sum())


def pixel_thresholds(cfg: SVConfig, image_size: np.ndarray) -> np.ndarray:
    """RANSAC's threshold (n,) float64 in pixels of each original database image of ``image_size`` (n, 2) int
    (width, height): ``cfg.threshold`` times ``long side / cfg.threshold_side`` for an image whose long side is
    above ``threshold_side``, else ``cfg.threshold`` (also for a size of 0, an image without features, and for
    ``threshold_side`` None). ``threshold_side`` is a fixed reference size, DELG's (revisitop's images are at most
    1024 px), not read from the extraction: it equals SIFT's default ``extract.sift.max_side``, so with the defaults
    the threshold is in pixels of the image SIFT finds its keypoints on, whose localisation error, like the affine
    model's misfit on a 3-D scene, grows with the original's size; a 4032-px phone photo would otherwise get 20
    original pixels, about 5 of those its features come from."""
    long_side = np.asarray(image_size, np.float64).reshape(-1, 2).max(axis=1)
    if cfg.threshold_side is None:
        return np.full(len(long_side), cfg.threshold)
    return cfg.threshold * np.maximum(1.0, long_side / cfg.threshold_side)


def verify_pair(qd: np.ndarray, qxy: np.ndarray, dd: np.ndarray, dxy: np.ndarray, cfg: SVConfig) -> int:
    """Inliers between one query and one database image: descriptors ``qd`` (n, D) / ``dd`` (m, D) float32,
    L2-normalised, and their keypoint positions ``qxy`` (n, 2) / ``dxy`` (m, 2) in pixels; ratio-tested one-to-one
    matches, then RANSAC (:func:`ratio_matches`, :func:`ransac_inliers`) with ``cfg.threshold`` in the pixels of
    ``dxy`` (the callers pass :func:`pixel_thresholds`' value for the database image)."""
    qi, di = ratio_matches(qd, dd, cfg.ratio)
    return ransac_inliers(qxy[qi], dxy[di], cfg.model, cfg.threshold, cfg.max_iters, cfg.confidence)


def rerank_by_inliers(ids: np.ndarray, sims: np.ndarray, inliers: np.ndarray, k: int) -> np.ndarray:
    """``ids`` (Nq, K) int with the first ``k`` columns of each row re-sorted by ``inliers`` (Nq, >= k) counts,
    descending, the global similarity ``sims`` (Nq, K) breaking ties; the columns beyond ``k`` keep their order."""
    out = ids.copy()
    k = min(k, ids.shape[1], inliers.shape[1])
    for r in range(ids.shape[0]):
        order = np.lexsort((-sims[r, :k], -inliers[r, :k]))
        out[r, :k] = ids[r, :k][order]
    return out


def _sv_setup(q_local, db_local, ids: np.ndarray, cfg: SVConfig):
    k = min(cfg.num_rerank, ids.shape[1])
    qk = min(cfg.q_desc, q_local["descriptors"].shape[1])
    dk = min(cfg.db_desc, db_local["descriptors"].shape[1])
    slots: dict[int, list[tuple[int, int]]] = {}
    for r in range(ids.shape[0]):
        for c in range(k):
            slots.setdefault(int(ids[r, c]), []).append((r, c))
    return k, qk, dk, np.unique(ids[:, :k]), slots


def verify_shortlists(q_local, db_local, ids: np.ndarray, cfg: SVConfig) -> tuple[np.ndarray, dict[str, float]]:
    """Inlier counts (Nq, k) int for the top ``k = cfg.num_rerank`` of every shortlist ``ids`` (Nq, K) int
    (database rows), and ``{"pairs", "seconds", "reads_seconds", "q_desc", "db_desc"}`` (the descriptors used;
    ``pairs``: those verified, both images with local features: a featureless image's pairs get 0 inliers
    unmatched, and counted, they made the time per pair look shorter, helper-144).

    ``q_local`` / ``db_local``: open local stores (``descriptors`` (N, K, D), ``count`` (N,), ``xy`` (N, K, 2) in
    pixels of the original image, strongest first; the database's ``image_size`` (N, 2) sets each image's RANSAC
    threshold, :func:`pixel_thresholds`). Seeds OpenCV's RANSAC process-wide (``cfg.seed``).

    ``q_local`` / ``db_local`` are open local stores; database rows are read once each, sorted, in blocks. Within a
    block, each query is matched against all its shortlisted images of the block at once (``ratio_matches_many``);
    RANSAC then runs pair by pair in the order of ``verify_shortlists_reference``, so the inlier counts are the
    same whenever the matches are."""
    import torch  # noqa: PLC0415 - as in ratio_matches_many; before the clock (its 1.2 s import was counted as reads)

    cv2.setRNGSeed(cfg.seed)
    nq = ids.shape[0]
    t0 = time.time()
    k, qk, dk, needed, slots = _sv_setup(q_local, db_local, ids, cfg)
    q_descriptors, q_count, q_xy = (
        q_local["descriptors"][:, :qk].astype(np.float32),
        q_local["count"][:],
        q_local["xy"][:, :qk],
    )
    q_n = np.minimum(q_count, qk).astype(np.int64)
    inliers = np.zeros((nq, k), np.int32)
    verified = 0
    work = torch.empty(max(1 << 22, qk * dk))  # every similarity product of the run (ratio_matches_many)
    batch = 256
    progress = Progress(log, "spatial verification", len(needed), "database images")
    reads = time.time() - t0  # the query side
    for s in range(0, len(needed), batch):
        rows = needed[s : s + batch]  # sorted: contiguous reads
        tr = time.time()
        d_descriptors = read_row_runs(db_local["descriptors"], rows, dk).astype(np.float32)
        d_count = np.minimum(read_row_runs(db_local["count"], rows), dk).astype(np.int64)
        d_xy = read_row_runs(db_local["xy"], rows, dk)
        d_threshold = pixel_thresholds(cfg, read_row_runs(db_local["image_size"], rows))
        reads += time.time() - tr
        by_query: dict[int, list[int]] = {}
        for j, row in enumerate(rows):
            for r, _ in slots[int(row)]:
                by_query.setdefault(r, []).append(j)
        matches: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for r, js in by_query.items():
            sel = np.asarray(js)
            for j, mt in zip(
                js,
                ratio_matches_many(q_descriptors[r, : q_n[r]], d_descriptors[sel], d_count[sel], cfg.ratio, work=work),
            ):
                matches[(r, j)] = mt
        for j, row in enumerate(rows):
            for r, c in slots[int(row)]:
                qi, di = matches[(r, j)]
                inliers[r, c] = ransac_inliers(
                    q_xy[r, qi], d_xy[j, di], cfg.model, d_threshold[j], cfg.max_iters, cfg.confidence
                )
                verified += bool(q_n[r] and d_count[j])
            progress.update(s + j + 1)
    seconds = time.time() - t0
    log.info("verified %d pairs in %.1f s", verified, seconds)
    return inliers, {"pairs": verified, "seconds": seconds, "reads_seconds": reads, "q_desc": qk, "db_desc": dk}


def verify_shortlists_reference(
    q_local, db_local, ids: np.ndarray, cfg: SVConfig
) -> tuple[np.ndarray, dict[str, float]]:
    """The previous implementation of ``verify_shortlists`` (one matrix product and ``argpartition`` per pair),
    frozen: the benchmark's reference for the batched one. Same arguments and inlier counts; its ``pairs`` is every
    pair, Nq x k (the batched one's counts only pairs whose images both have features)."""
    cv2.setRNGSeed(cfg.seed)
    k = min(cfg.num_rerank, ids.shape[1])
    nq = ids.shape[0]
    t0 = time.time()
    qk = min(cfg.q_desc, q_local["descriptors"].shape[1])
    dk = min(cfg.db_desc, db_local["descriptors"].shape[1])
    q_descriptors, q_count, q_xy = q_local["descriptors"][:, :qk], q_local["count"][:], q_local["xy"][:, :qk]
    inliers = np.zeros((nq, k), np.int32)
    needed = np.unique(ids[:, :k])
    slots: dict[int, list[tuple[int, int]]] = {}
    for r in range(nq):
        for c in range(k):
            slots.setdefault(int(ids[r, c]), []).append((r, c))
    batch = 256
    progress = Progress(log, "spatial verification", len(needed), "database images")
    reads = time.time() - t0  # the query side
    for s in range(0, len(needed), batch):
        rows = needed[s : s + batch]  # sorted: contiguous reads
        tr = time.time()
        d_descriptors = db_local["descriptors"][rows, :dk]
        d_count = db_local["count"][rows]
        d_xy = db_local["xy"][rows, :dk]
        d_cfg = [replace(cfg, threshold=t) for t in pixel_thresholds(cfg, db_local["image_size"][rows])]
        reads += time.time() - tr
        for j, row in enumerate(rows):
            dn = int(min(d_count[j], dk))
            for r, c in slots[int(row)]:
                qn = int(min(q_count[r], qk))
                inliers[r, c] = verify_pair(
                    q_descriptors[r, :qn], q_xy[r, :qn], d_descriptors[j, :dn], d_xy[j, :dn], d_cfg[j]
                )
            progress.update(s + j + 1)
    seconds = time.time() - t0
    log.info("verified %d pairs in %.1f s", nq * k, seconds)
    return inliers, {"pairs": nq * k, "seconds": seconds, "reads_seconds": reads, "q_desc": qk, "db_desc": dk}

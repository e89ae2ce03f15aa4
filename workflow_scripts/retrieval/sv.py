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
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from .runtime import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SVConfig:
    num_rerank: int = 100
    q_desc: int = 1000  # descriptors per image used (strongest first; capped by what was extracted)
    db_desc: int = 1000
    ratio: float = 0.8  # Lowe's ratio on descriptor distances (1.0: off)
    model: str = "affine"  # affine | homography
    threshold: float = 20.0  # RANSAC reprojection threshold in pixels of the original image (DELG: 20)
    max_iters: int = 1000
    confidence: float = 0.999
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio_matches(q: np.ndarray, d: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches (query index, database index) of L2-normalised descriptors that pass the ratio test.

    Each query descriptor proposes its nearest database descriptor if its distance is below ``ratio`` times the
    distance to the second nearest; among proposals for the same database descriptor only the closest is kept."""
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
    di, dd = nn[qi], d1[qi]
    # one-to-one: for each database keypoint keep the query keypoint at the smallest distance
    order = np.lexsort((dd, di))
    first = np.ones(len(order), bool)
    first[1:] = di[order][1:] != di[order][:-1]
    keep = order[first]
    return qi[keep], di[keep]


def ransac_inliers(src: np.ndarray, dst: np.ndarray, model: str, threshold: float, max_iters: int,
                   confidence: float) -> int:
    """Inliers of the best affine transform / homography mapping ``src`` to ``dst`` (0 when too few points)."""
    src = np.ascontiguousarray(src, np.float32).reshape(-1, 1, 2)
    dst = np.ascontiguousarray(dst, np.float32).reshape(-1, 1, 2)
    if model == "affine":
        if len(src) < 3:
            return 0
        _, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                       maxIters=max_iters, confidence=confidence)
    elif model == "homography":
        if len(src) < 4:
            return 0
        _, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=max_iters, confidence=confidence)
    else:
        raise ValueError(f"sv.model must be 'affine' or 'homography', not {model!r}")
    return 0 if mask is None else int(mask.sum())


def verify_pair(qd: np.ndarray, qxy: np.ndarray, dd: np.ndarray, dxy: np.ndarray, cfg: SVConfig) -> int:
    qi, di = ratio_matches(qd, dd, cfg.ratio)
    return ransac_inliers(qxy[qi], dxy[di], cfg.model, cfg.threshold, cfg.max_iters, cfg.confidence)


def rerank_by_inliers(ids: np.ndarray, sims: np.ndarray, inliers: np.ndarray, k: int) -> np.ndarray:
    """Re-sort the first ``k`` columns of each row by inliers (descending), global similarity breaking ties."""
    out = ids.copy()
    k = min(k, ids.shape[1], inliers.shape[1])
    for r in range(ids.shape[0]):
        order = np.lexsort((-sims[r, :k], -inliers[r, :k]))
        out[r, :k] = ids[r, :k][order]
    return out


def verify_shortlists(q_local, db_local, ids: np.ndarray, cfg: SVConfig) -> tuple[np.ndarray, dict[str, float]]:
    """Inlier counts (Nq, k) for the top ``k = cfg.num_rerank`` of every shortlist.

    ``q_local`` / ``db_local`` are open local stores; database rows are read once each, sorted, in batches."""
    cv2.setRNGSeed(cfg.seed)
    k = min(cfg.num_rerank, ids.shape[1])
    nq = ids.shape[0]
    t0 = time.time()
    qk = min(cfg.q_desc, q_local["descriptors"].shape[1])
    dk = min(cfg.db_desc, db_local["descriptors"].shape[1])
    q_desc, q_count, q_xy = q_local["descriptors"][:, :qk], q_local["count"][:], q_local["xy"][:, :qk]
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
        rows = needed[s:s + batch]  # sorted: contiguous reads
        tr = time.time()
        d_desc = db_local["descriptors"][rows, :dk]
        d_count = db_local["count"][rows]
        d_xy = db_local["xy"][rows, :dk]
        reads += time.time() - tr
        for j, row in enumerate(rows):
            dn = int(min(d_count[j], dk))
            for r, c in slots[int(row)]:
                qn = int(min(q_count[r], qk))
                inliers[r, c] = verify_pair(q_desc[r, :qn], q_xy[r, :qn], d_desc[j, :dn], d_xy[j, :dn], cfg)
            progress.update(s + j + 1)
    seconds = time.time() - t0
    log.info("verified %d pairs in %.1f s", nq * k, seconds)
    return inliers, {"pairs": nq * k, "seconds": seconds, "reads_seconds": reads, "q_desc": qk, "db_desc": dk}


def evaluate_sv_stage(query_local: str, db_local: str, knn_path: str, lists_path: str, gnd_path: str,
                      baseline_json: str, out_json: str, out_ranking: str, out_csv: str, dataset: str,
                      cfg: dict[str, Any], n_bootstrap: int, ks, csv_top: int, versions: dict[str, str],
                      hyperparameters: dict[str, Any], preset: str) -> None:
    """Re-rank the global shortlist by spatial verification and evaluate it next to the global baseline."""
    from .ames_rerank import similarity_along  # noqa: PLC0415
    from .global_store import read_neighbours  # noqa: PLC0415
    from .local_store import open_local  # noqa: PLC0415
    from .pipeline import cost_timing, write_reranked_evaluation  # noqa: PLC0415
    from .runtime import read_json  # noqa: PLC0415

    conf = SVConfig(**cfg)
    ids, sims, _ = read_neighbours(knn_path)
    lists, gnd = read_json(lists_path), read_json(gnd_path)
    n_db = len(lists["db"])
    if ids.shape[0] != len(lists["query"]):
        raise ValueError(f"{knn_path}: {ids.shape[0]} rows but {len(lists['query'])} queries in {lists_path}")
    with open_local(query_local) as fq, open_local(db_local) as fd:
        if fq["descriptors"].shape[0] != ids.shape[0] or fd["descriptors"].shape[0] != n_db:
            raise ValueError(f"{query_local} / {db_local}: row counts do not match {lists_path}")
        inliers, timing = verify_shortlists(fq, fd, ids, conf)
    ranking = rerank_by_inliers(ids, sims, inliers, conf.num_rerank)
    # the CSV's score column is the global similarity, listed in the verified order
    write_reranked_evaluation("sv", ranking, similarity_along(ranking, ids, sims), ids, lists, gnd, dataset, out_json,
                              out_ranking, out_csv, baseline_json, knn_path, n_bootstrap, ks, csv_top, versions,
                              hyperparameters, preset,
                              timing=cost_timing(ids.shape[0], reads=timing["reads_seconds"],
                                                 rerank=timing["seconds"] - timing["reads_seconds"], pairs=timing["pairs"],
                                                 q_desc=timing["q_desc"], db_desc=timing["db_desc"]),
                              extra_datasets={"inliers": inliers})

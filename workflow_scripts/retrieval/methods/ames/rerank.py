"""Re-ranking a global shortlist with AMES logits: pair selection, logits computed once, score fusion, grid sweep.

Final score of the i-th shortlist entry among the top ``num_rerank``: ``s = lam * g + (1 - lam) * sigmoid(gamma * l)``
with g the global similarity and l the AMES logit, plus ``mu * e`` when geometric evidence is fused (``e`` in [0, 1]
from spatial verification's inlier counts, ``geometric_evidence``; ``mu`` 0 is AMES alone); the top block is re-sorted
by s, the rest keeps its global order.

Junk handling: ``none`` (default) re-ranks the global shortlist as it is. ``ames`` reproduces the AMES/DELG
evaluation: for each protocol, the images it ignores (junk; for Hard also the easy positives; for Easy also the
hard ones) are moved to the end of the shortlist before the top ``num_rerank`` are re-ranked, giving one ranking
per protocol. Logits are computed once for the union of the pairs any protocol and grid point needs.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np
import torch

from retrieval.evaluation.metrics import PROTOCOLS, ap_terms, evaluate_rankings, protocol_labels
from retrieval.methods.ames.infer import fast_dtype, prepare_side, score_prepared
from retrieval.runtime import Progress
from retrieval.search.exact import locate

log = logging.getLogger(__name__)


JUNK_MODES = ("none", "ames")
FUSIONS = ("sigmoid", "promote")


def fusion_logits(logits: Sequence[np.ndarray], fusion: str) -> list[np.ndarray]:
    """The logits the fusion reads. ``sigmoid``: as they are (AMES's rule). ``promote``: clipped at 0 (the model's
    probability of a match clipped at 1/2), so the model can lift an image it finds matching above the others, while
    the images it finds no match for keep their global order among themselves: no match among a few hundred local
    descriptors is weak evidence on real photos (other parts of the scene, other scales), a confident match is strong
    (README, "AMES re-ranking")."""
    if fusion not in FUSIONS:
        raise ValueError(f"ames.fusion must be one of {FUSIONS}, got {fusion!r}")
    if fusion == "sigmoid":
        return list(logits)
    return [np.maximum(np.asarray(lg, np.float32), np.float32(0.0)) for lg in logits]


def protocol_shortlists(ids: np.ndarray, gnd: Sequence[dict[str, Any]] | None, junk_mode: str) -> dict[str, np.ndarray]:
    """The shortlist each protocol re-ranks: the global one, or (``ames``) with that protocol's ignored images last."""
    if junk_mode not in JUNK_MODES:
        raise ValueError(f"junk_mode must be one of {JUNK_MODES}, got {junk_mode!r}")
    if junk_mode == "none" or gnd is None:
        return {p: ids for p in PROTOCOLS}
    out = {}
    for p in PROTOCOLS:
        rows = []
        for i, g in enumerate(gnd):
            _, ignored = protocol_labels(g, p)
            last = np.isin(ids[i], ignored)
            rows.append(np.concatenate([ids[i][~last], ids[i][last]]))
        out[p] = np.stack(rows)
    return out


def needed_pairs(shortlists: dict[str, np.ndarray], max_k: int) -> list[np.ndarray]:
    """Per query, the sorted database ids whose logits some protocol's top ``max_k`` needs."""
    n_q = next(iter(shortlists.values())).shape[0]
    return [np.unique(np.concatenate([s[i, :max_k] for s in shortlists.values()])) for i in range(n_q)]


@torch.no_grad()
def compute_logits(
    model,
    q_descriptors: np.ndarray,
    q_count: np.ndarray,
    db_reader,
    pairs: list[np.ndarray],
    q_desc: int,
    db_desc: int,
    batch: int = 256,
    device: str = "cpu",
    prepared: bool = False,
    dtype: torch.dtype | None = None,
    db_block: int = 256,
) -> list[np.ndarray]:
    """AMES logits (float32) for every (query i, database j in pairs[i]).

    ``q_descriptors (n_queries, K, D)`` with ``q_count (n_queries,)`` real rows each; the first ``q_desc`` (a count)
    of each query and ``db_desc`` of each database image are used (the strongest first, as stored).

    Work is done once where it can be (see infer.py): each query is projected and its layer-1 self attention
    computed once; each shortlisted database image is read once (sorted rows, blocks of ``db_block``), projected
    (rounded through float16 for the full-precision model) and its layer-1 self attention computed once, then every
    pair that needs it is scored, ``batch`` pairs at a time. ``dtype`` None: bfloat16 where the hardware runs it
    natively, else float32 (``ames_infer.fast_dtype``).
    ``db_reader(rows) -> (descriptors (n, K, D), counts (n,))`` reads sorted rows; with ``prepared`` it returns
    the database tokens (n, K, 128) already (an AMES database store, see store.py).
    """

    model.eval().to(device)
    dtype = fast_dtype(device) if dtype is None else dtype
    uniq = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
    t0 = time.time()
    q = torch.from_numpy(q_descriptors[:, :q_desc].astype(np.float32)).to(device)
    q_pad = torch.arange(q.shape[1])[None] >= torch.from_numpy(np.minimum(q_count, q_desc).astype(np.int64))[:, None]
    q_side = prepare_side(model, model.project(q), q_pad.to(device))
    flat_q = (
        np.concatenate([np.full(len(p), i) for i, p in enumerate(pairs)]).astype(np.int64)
        if pairs
        else np.zeros(0, np.int64)
    )
    flat_d = np.searchsorted(uniq, np.concatenate(pairs)).astype(np.int64) if pairs else np.zeros(0, np.int64)
    order = np.argsort(flat_d, kind="stable")  # pairs grouped by database image, so each is prepared once
    out = np.zeros(len(flat_q), np.float32)
    progress = Progress(log, "logits", len(flat_q), "pairs")
    prep, done = 0.0, 0
    for s in range(0, len(uniq), db_block):
        tp = time.time()
        rows = uniq[s : s + db_block]
        d, c = db_reader(rows)
        tok = (
            d[:, :db_desc]
            if prepared
            else model.project_db(torch.from_numpy(d[:, :db_desc].astype(np.float32)).to(device))
        )
        pad = torch.arange(tok.shape[1])[None] >= torch.from_numpy(np.minimum(c, db_desc).astype(np.int64))[:, None]
        d_side = prepare_side(model, tok.to(device), pad.to(device))
        prep += time.time() - tp
        lo, hi = np.searchsorted(flat_d[order], [s, s + len(rows)])
        block = order[lo:hi]
        for b in range(0, len(block), batch):
            sel = block[b : b + batch]
            qi, di = torch.from_numpy(flat_q[sel]).to(device), torch.from_numpy(flat_d[sel] - s).to(device)
            out[sel] = score_prepared(model, q_side.take(qi), d_side.take(di), dtype).cpu().numpy()
            done += len(sel)
            progress.update(done)
    t2 = time.time()
    log.info(
        "logits: %d pairs (%d queries, %d database images) in %.2f s (%.2f s of it reading and preparing images), "
        "%.0f pairs/s, %s",
        len(flat_q),
        len(pairs),
        len(uniq),
        t2 - t0,
        prep,
        len(flat_q) / max(t2 - t0, 1e-9),
        str(dtype).removeprefix("torch."),
    )
    splits = np.cumsum([len(p) for p in pairs])[:-1]
    return np.split(out, splits)


def lookup_logits(pairs: list[np.ndarray], logits: list[np.ndarray], shortlist: np.ndarray, k: int) -> np.ndarray:
    """Logits (Nq, k) float32 of the first k entries of each query's ``shortlist`` (Nq, K) (k is clamped to K), from
    the per-query cached ``pairs[i]`` (database ids) and ``logits[i]``. KeyError naming the query when a shortlisted
    image has no cached logit (a cache made for a smaller ``num_rerank``)."""
    k = min(k, shortlist.shape[1])
    out = np.zeros((shortlist.shape[0], k), np.float32)
    for i in range(shortlist.shape[0]):
        pos, found = locate(pairs[i], shortlist[i, :k])
        if not found.all():
            raise KeyError(f"query {i}: a shortlisted image has no cached logit (cache made for a smaller num_rerank?)")
        out[i] = logits[i][pos]
    return out


def geometric_evidence(inliers: np.ndarray, cap: int) -> np.ndarray:
    """Spatial verification's inlier counts (any shape, integers >= 0) as evidence of a match in [0, 1]:
    ``min(inliers, cap) / cap`` (float32). Saturating, so that past ``cap`` inliers (a verified match) more inliers
    do not outweigh the rest of the score. ValueError for ``cap`` < 1."""
    if cap < 1:
        raise ValueError(f"ames.geometry.inliers_cap must be >= 1, got {cap}")
    return np.minimum(np.asarray(inliers, np.float32), np.float32(cap)) / np.float32(cap)


def lookup_inliers(sv_ids: np.ndarray, inliers: np.ndarray, shortlist: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Inlier counts (Nq, k) int32 of the first k entries of each ``shortlist`` row, read from spatial verification's
    ``inliers`` (Nq, k_sv), which are aligned with ``sv_ids[:, :k_sv]`` (the global shortlist it verified). Entries sv
    did not verify (beyond its ``num_rerank``, or moved into the top k by junk_mode ``ames``) get 0; their number is
    returned second. ValueError when the row counts differ."""
    if sv_ids.shape[0] != shortlist.shape[0] or inliers.shape[0] != shortlist.shape[0]:
        raise ValueError(f"inliers for {inliers.shape[0]} queries, shortlist of {shortlist.shape[0]}")
    k = min(k, shortlist.shape[1])
    k_sv = min(inliers.shape[1], sv_ids.shape[1])
    out = np.zeros((shortlist.shape[0], k), np.int32)
    missing = 0
    for i in range(shortlist.shape[0]):
        pos, found = locate(sv_ids[i, :k_sv], shortlist[i, :k])
        out[i, found] = inliers[i, pos[found]]
        missing += int((~found).sum())
    return out, missing


def fused_score(
    g: np.ndarray, logit: np.ndarray, lam: float, gamma: float, mu: float = 0.0, evidence: np.ndarray | None = None
) -> np.ndarray:
    """AMES's fusion ``lam * g + (1 - lam) * sigmoid(gamma * logit)`` (Suma et al. 2024), elementwise, plus
    ``mu * evidence`` (geometric evidence in [0, 1], same shape; ours, README "AMES and the geometry") when ``mu`` is
    not 0; a global similarity of -inf (an image without features, featureless.py) stays -inf for every lam, 0
    included. ValueError when ``mu`` is not 0 and there is no evidence."""
    g = np.asarray(g)
    with np.errstate(invalid="ignore", over="ignore"):
        s = lam * g + (1.0 - lam) / (1.0 + np.exp(-gamma * logit))
    if mu:
        if evidence is None:
            raise ValueError("a geometric weight mu > 0 needs the geometric evidence (spatial verification's inliers)")
        s = s + mu * evidence
    return np.where(np.isneginf(g), -np.inf, s)


def rerank(
    shortlist: np.ndarray,
    global_sim: np.ndarray,
    logits: np.ndarray,
    lam: float,
    gamma: float,
    k: int,
    mu: float = 0.0,
    evidence: np.ndarray | None = None,
) -> np.ndarray:
    """AMES's re-ranking (Suma et al., ECCV 2024) at one point (``lam``, ``gamma``, ``k`` = ``num_rerank``, ``mu``):
    the shortlist ``shortlist`` (Nq, K) int of database ids with its global similarities ``global_sim`` (Nq, K)
    float32 and AMES's logits ``logits`` (Nq, >= k) float32, aligned with it; the first ``k`` entries of each row
    (clamped to K and to the logits' width) re-sorted by :func:`fused_score`, descending and stable, the rest kept
    in global order. Returns (Nq, K), ``shortlist``'s dtype. ``evidence`` (Nq, >= k) float in [0, 1], aligned with
    ``shortlist``, is read when ``mu`` is not 0; ValueError from :func:`fused_score` when it is then None."""
    k = min(k, shortlist.shape[1], logits.shape[1])
    s = fused_score(global_sim[:, :k], logits[:, :k], lam, gamma, mu, None if evidence is None else evidence[:, :k])
    order = np.argsort(-s, axis=1, kind="stable")
    out = shortlist.copy()
    out[:, :k] = np.take_along_axis(shortlist[:, :k], order, axis=1)
    return out


def grid_rankings(
    shortlists: dict[str, np.ndarray],
    sims: dict[str, np.ndarray],
    pairs: list[np.ndarray],
    logits: list[np.ndarray],
    lam: float,
    gamma: float,
    k: int,
    mu: float = 0.0,
    evidence: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The re-ranked ranking (:func:`rerank`) of each protocol (``PROTOCOLS``: easy, medium, hard) at one grid point:
    ``shortlists`` and ``sims`` per protocol ((Nq, K) int ids, (Nq, K) float32 similarities), the logits looked up
    from the per-query cache ``pairs[i]`` (database ids) / ``logits[i]`` (float32, aligned) by
    :func:`lookup_logits` (KeyError naming a query whose shortlisted image has no cached logit), ``evidence`` per
    protocol aligned with its shortlist. Protocols that share a shortlist, its similarities and evidence (``junk_mode: none``) share one ranking, the same
    array, re-ranked once (the writers store it once)."""
    out: dict[str, np.ndarray] = {}
    done: dict[tuple[int, int], np.ndarray] = {}
    for p in PROTOCOLS:
        ev = None if evidence is None else evidence[p]
        key = (id(shortlists[p]), id(sims[p]), id(ev))
        if key not in done:
            done[key] = rerank(
                shortlists[p], sims[p], lookup_logits(pairs, logits, shortlists[p], k), lam, gamma, k, mu, ev
            )
        out[p] = done[key]
    return out


def evaluate_protocol_rankings(
    rankings: dict[str, np.ndarray], gnd, n_db: int, ks=(1, 5, 10), retrieved_nothing=None
) -> dict[str, Any]:
    """Metrics where each protocol is read from its own ranking (identical rankings when junk_mode is none);
    ``retrieved_nothing`` as in :func:`retrieval.evaluation.metrics.evaluate_rankings`."""
    first = rankings[PROTOCOLS[0]]
    if all(rankings[p] is first for p in PROTOCOLS):
        return evaluate_rankings(first, gnd, n_db, ks, retrieved_nothing)
    per = {p: evaluate_rankings(rankings[p], gnd, n_db, ks, retrieved_nothing) for p in PROTOCOLS}
    out: dict[str, Any] = {
        key: {p: per[p][key][p] for p in PROTOCOLS} for key in ("mAP", *[f"mP@{k}" for k in ks], "n_evaluated")
    }
    out["per_query_ap"] = {p: per[p]["per_query_ap"][p] for p in PROTOCOLS}
    return out


class GridSweep:
    """mAP of many (lambda, gamma, num_rerank) points over cached logits, each point costing one sort of (Nq, k).

    Only the first k shortlist entries move, so everything about the tail is fixed per (query, protocol, k): its
    positives keep their ranks, and the junk inside the top k is there whatever the order. Built once: per protocol
    the labels (positive 1, ignored -1, both 2, other 0), global similarities and logits of the top ``max(ks)``, and per k
    (once, when first asked) the tail's share of each query's AP. A point then sorts the top k by the fused score
    (stable, as ``rerank``) and adds the top's trapezoids. Equal to ``evaluate_protocol_rankings(grid_rankings(...))``'s mAP
    (a test checks it, junk modes included). ``evidence``: per protocol, the geometric evidence (Nq, >= max(ks))
    aligned with its shortlist, which points with a geometric weight ``mu`` > 0 add. ``retrieved_nothing``: (Nq,)
    bool, the queries without features, which score AP 0 at every point wherever they have positives, as in
    :func:`retrieval.evaluation.metrics.evaluate_rankings` (the grid and its oracle agree with the evaluated point).
    ValueError when its length is not Nq."""

    def __init__(
        self,
        shortlists: dict[str, np.ndarray],
        sims: dict[str, np.ndarray],
        pairs,
        logits,
        gnd,
        n_db: int,
        ks: Sequence[int],
        evidence: dict[str, np.ndarray] | None = None,
        retrieved_nothing: Sequence[bool] | None = None,
    ):
        self.protocols: dict[str, dict[str, Any]] = {}
        self.max_k = max(ks)
        n_queries = shortlists[PROTOCOLS[0]].shape[0]
        self.nothing = np.zeros(n_queries, bool)
        if retrieved_nothing is not None:
            self.nothing = np.asarray(retrieved_nothing, bool)
            if self.nothing.shape != (n_queries,):
                raise ValueError(f"retrieved_nothing: {self.nothing.size} flags for {n_queries} queries")
        for p in PROTOCOLS:
            sl = shortlists[p]
            kmax, n_q = min(self.max_k, sl.shape[1]), sl.shape[0]
            self.protocols[p] = {
                "labels": np.zeros((n_q, kmax), np.int8),
                "npos": np.zeros(n_q, np.int64),
                "ranks": [(np.zeros(0, np.int64), np.zeros(0, np.int64))] * n_q,
                "tail": {},
                "kmax": kmax,
                "shortlist_id": id(sl),
                "g": np.asarray(sims[p][:, :kmax], np.float32),
                "logit": lookup_logits(pairs, logits, sl, kmax),
                "evidence": None if evidence is None else np.asarray(evidence[p][:, :kmax], np.float32),
            }
        for i, g in enumerate(gnd):
            inverse: dict[int, np.ndarray] = {}  # rank of every image, once per shortlist (one query at a time)
            for p, d in self.protocols.items():
                positives, ignored = protocol_labels(g, p)
                d["npos"][i] = len(positives)
                if not len(positives):
                    continue
                sl = shortlists[p]
                where = inverse.get(id(sl))
                if where is None:
                    where = inverse[id(sl)] = np.full(n_db, -1, np.int64)
                    where[sl[i]] = np.arange(sl.shape[1])
                pr, jr = where[positives], where[ignored]
                pr, jr = np.sort(pr[pr >= 0]), np.sort(jr[jr >= 0])
                d["labels"][i, jr[jr < d["kmax"]]] = -1
                top = pr[pr < d["kmax"]]
                # a positive that is also ignored (a hand-written gnd.json): compute_map counts it, and it shifts
                # the positives after it like any ignored image (label 2: both)
                d["labels"][i, top] = np.where(d["labels"][i, top] == -1, 2, 1)
                d["ranks"][i] = (pr, pr - np.searchsorted(jr, pr, side="left"))  # and with the ignored images removed

    @staticmethod
    def _tail(d: dict[str, Any], k: int) -> np.ndarray:
        """Each query's AP share (unnormalised) of the positives ranked at k or beyond, which no point moves."""
        if k not in d["tail"]:
            out = np.zeros(len(d["ranks"]))
            for i, (pr, adjusted) in enumerate(d["ranks"]):
                first = int(np.searchsorted(pr, k))  # the positives in the top k come first in any order
                out[i] = np.sum(
                    ap_terms(np.arange(first, len(pr), dtype=np.float64), adjusted[first:].astype(np.float64))
                )
            d["tail"][k] = out
        return d["tail"][k]

    def mean_ap(self, lam: float, gamma: float, k: int, mu: float = 0.0) -> dict[str, float | None]:
        """``{"E", "M", "H"}`` mAP in percent at one grid point (``lam``, ``gamma``, ``num_rerank`` ``k``, geometric
        weight ``mu``), None for a protocol without a query to evaluate; the same numbers as re-ranking and
        evaluating each ranking (a unit test checks it). ValueError for ``k`` beyond the sweep's largest."""
        if k > self.max_k:
            raise ValueError(f"num_rerank {k} is beyond the largest this sweep was built for ({self.max_k})")
        out: dict[str, float | None] = {}
        orders: dict[int, np.ndarray] = {}  # protocols that share a shortlist (junk_mode none) share the sort
        for p, d in self.protocols.items():
            k_ = min(k, d["kmax"])
            order = orders.get(d["shortlist_id"])
            if order is None:
                e = None if d["evidence"] is None else d["evidence"][:, :k_]
                s = fused_score(d["g"][:, :k_], d["logit"][:, :k_], lam, gamma, mu, e)
                order = orders[d["shortlist_id"]] = np.argsort(-s, axis=1, kind="stable")
            lab = np.take_along_axis(d["labels"][:, :k_], order, axis=1)
            keep, pos = (lab == 0) | (lab == 1), lab >= 1
            rank = np.cumsum(keep, axis=1) - keep  # rank among the kept entries (ignored images removed)
            j = np.cumsum(pos, axis=1) - pos  # positives ranked before
            top = np.where(pos, ap_terms(j, rank), 0.0).sum(axis=1)
            valid = d["npos"] > 0
            ap = np.where(self.nothing, 0.0, top + self._tail(d, k_))[valid] / d["npos"][valid]
            out[p] = round(100.0 * float(np.mean(ap)), 4) if valid.any() else None
        return out

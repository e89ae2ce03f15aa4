"""Revisited Oxford/Paris evaluation (Radenović et al., CVPR 2018), as revisitop's ``compute_map`` computes it.

Rankings here are ``(n_queries, n_ranked)`` arrays of database indices, best first (revisitop's own
``ranks`` is the transpose). Junk images are removed from each ranking before AP; AP is the trapezoidal
area under the precision-recall curve; mP@k uses revisitop's modified denominator ``min(k, rank of the last
positive)``; queries without positives under a protocol are excluded from the means.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

PROTOCOLS = ("E", "M", "H")


def protocol_labels(g: dict[str, Sequence[int]], protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """(positives, ignored) database indices (int64; a union of two lists sorted and unique, a single list in its
    ``gnd`` order) of one query under protocol E, M or H, as revisitop
    defines them (Radenović et al., CVPR 2018; ``compute_map`` of revisitop's example code): Easy counts easy
    positives and ignores hard and junk, Medium counts easy and hard and ignores junk, Hard counts hard and ignores
    easy and junk. ``g``: one ``gnd`` entry (``easy``, ``hard``, ``junk`` lists; absent keys are empty). ValueError
    for another protocol name."""
    easy = np.asarray(g.get("easy", []), dtype=np.int64)
    hard = np.asarray(g.get("hard", []), dtype=np.int64)
    junk = np.asarray(g.get("junk", []), dtype=np.int64)
    if protocol == "E":
        return easy, np.union1d(junk, hard)
    if protocol == "M":
        return np.union1d(easy, hard), junk
    if protocol == "H":
        return hard, np.union1d(junk, easy)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def average_precision(pos_ranks: np.ndarray, n_positives: int) -> float:
    """Trapezoidal AP (revisitop's ``compute_ap``, Radenović et al., CVPR 2018) from ``pos_ranks`` (p,) int, the
    sorted 0-based ranks of the retrieved positives with the junk removed; a float in [0, 1] (:func:`ap_terms`).

    Positives that were never retrieved (truncated rankings) contribute nothing; ``n_positives`` counts all.
    ValueError when ``n_positives`` < 1 (revisitop skips such a query; its callers do too).
    """
    if n_positives <= 0:
        raise ValueError("average_precision needs at least one positive")
    pos = np.asarray(pos_ranks, dtype=np.float64)
    return float(np.sum(ap_terms(np.arange(len(pos), dtype=np.float64), pos)) / n_positives)


def ap_terms(j: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Each retrieved positive's trapezoid in revisitop's AP (``compute_ap``): the mean of the precision just
    before it (``j / rank``, 1 at rank 0) and at it (``(j + 1) / (rank + 1)``), where ``j`` is the number of
    positives ranked before it and ``rank`` its 0-based rank with the junk removed. Elementwise, any shape;
    float64. AP is the sum of the terms over the positives divided by their number (retrieved or not)."""
    before = np.where(rank == 0, 1.0, j / np.maximum(rank, 1.0))
    return (before + (j + 1.0) / (rank + 1.0)) / 2.0


def _positions(ranking: np.ndarray, items: np.ndarray, n_db: int) -> np.ndarray:
    """Sorted 0-based positions of ``items`` in ``ranking`` (items absent from a truncated ranking are skipped)."""
    where = np.full(n_db, -1, dtype=np.int64)
    where[ranking] = np.arange(len(ranking))
    p = where[items]
    return np.sort(p[p >= 0])


def check_orientation(ranks: np.ndarray, n_queries: int, n_db: int) -> None:
    """ValueError unless ``ranks`` is (n_queries, n_ranked) with n_ranked <= n_db and every entry a database index
    in [0, n_db): the project's rankings are query-major, revisitop's ``ranks`` are (n_db, n_queries), so a
    transposed array is named as such."""
    if ranks.ndim != 2:
        raise ValueError(f"ranks must be 2-D (n_queries, n_ranked), got shape {ranks.shape}")
    if ranks.shape[0] != n_queries:
        hint = ""
        if ranks.shape[1] == n_queries:
            hint = " (it looks transposed: revisitop's ranks are (n_db, n_queries), this expects (n_queries, n_db))"
        raise ValueError(f"ranks has shape {ranks.shape} but there are {n_queries} queries{hint}")
    if ranks.shape[1] > n_db:
        raise ValueError(f"ranks has {ranks.shape[1]} columns but the database has only {n_db} images")
    if ranks.size and (ranks.min() < 0 or ranks.max() >= n_db):
        raise ValueError(f"ranks holds indices outside 0..{n_db - 1}")


def query_metrics(
    ranking: np.ndarray, positives: np.ndarray, ignored: np.ndarray, n_db: int, ks: Sequence[int]
) -> tuple[float, list[float]] | None:
    """AP (a fraction, revisitop's trapezoidal ``compute_ap``) and mP@k (fractions, revisitop's modified precision:
    at k, or at the last positive's rank when that comes first) of one query, or None when it has no positives.
    ``ranking`` (n_ranked,) int: database indices, best first; ``positives`` / ``ignored`` from
    :func:`protocol_labels` (the ignored are removed from the ranking before ranks are counted); ``ks``: the k of
    mP@k."""
    if len(positives) == 0:
        return None
    pos = _positions(ranking, positives, n_db)
    junk = _positions(ranking, ignored, n_db)
    pos = pos - np.searchsorted(junk, pos, side="left")  # drop junk ranked before each positive
    ap = average_precision(pos, len(positives))
    if len(pos) == 0:
        return ap, [0.0 for _ in ks]
    pos1 = pos + 1
    prec = []
    for k in ks:
        kq = min(int(pos1.max()), k)
        prec.append(float(np.sum(pos1 <= kq) / kq))
    return ap, prec


NOTHING_RETRIEVED = (
    "retrieved_nothing: (n_queries,) bool, the queries without features (unreadable under on_bad_image: skip, or "
    "blank): AP 0 (and P@k 0) wherever they have positives, as GLDv2's metric scores a query without predictions; "
    "their ranking, the database order, would otherwise score by how the files happen to be named"
)


def _nothing(retrieved_nothing: Sequence[bool] | None, i: int) -> bool:
    return retrieved_nothing is not None and bool(retrieved_nothing[i])


def evaluate_rankings(
    ranks: np.ndarray,
    gnd: Sequence[dict[str, Any]],
    n_db: int,
    ks: Sequence[int] = (1, 5, 10),
    retrieved_nothing: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """mAP and mP@k (in percent) for E, M, H, plus per-query AP (fractions; None where a query has no positive):
    ``{"mAP": {E, M, H}, "mP@k": {...} for each k, "per_query_ap": {E, M, H: [...]}, "n_evaluated": {E, M, H}}``
    (a protocol with no query to evaluate gets None). ``ranks`` (n_queries, n_ranked) int, database indices best
    first (revisitop's mAP needs every image ranked; a truncated ranking counts unretrieved positives as missed);
    ``gnd``: revisitop's per-query ``easy`` / ``hard`` / ``junk`` lists; ``ks``: the k of mP@k. ValueError from
    :func:`check_orientation` for a ranking of another shape. See NOTHING_RETRIEVED for ``retrieved_nothing``."""
    ranks = np.asarray(ranks)
    check_orientation(ranks, len(gnd), n_db)
    out: dict[str, Any] = {"mAP": {}, **{f"mP@{k}": {} for k in ks}, "per_query_ap": {}, "n_evaluated": {}}
    for protocol in PROTOCOLS:
        aps: list[float | None] = []
        precs = []
        for i, g in enumerate(gnd):
            positives, ignored = protocol_labels(g, protocol)
            r = query_metrics(ranks[i], positives, ignored, n_db, ks)
            if r is None:
                aps.append(None)
                continue
            if _nothing(retrieved_nothing, i):
                r = (0.0, [0.0] * len(ks))
            aps.append(r[0])
            precs.append(r[1])
        valid = [a for a in aps if a is not None]
        n = len(valid)
        out["n_evaluated"][protocol] = n
        out["mAP"][protocol] = round(100.0 * float(np.mean(valid)), 4) if n else None
        mean_prec = np.mean(np.asarray(precs), axis=0) if n else [None] * len(ks)
        for j, k in enumerate(ks):
            out[f"mP@{k}"][protocol] = round(100.0 * float(mean_prec[j]), 4) if n else None
        out["per_query_ap"][protocol] = aps
    return out


def headline(m: dict[str, Any]) -> dict[str, Any]:
    """The metrics a results JSON reports (mAP and mP@k per protocol) from :func:`evaluate_rankings`' output."""
    return {k: v for k, v in m.items() if k.startswith(("mAP", "mP@"))}


GLDV2_K = 100


GLDV2_USAGES = ("Public", "Private")


def gldv2_average_precision(prediction: Sequence[int], relevant: set[int], k: int = GLDV2_K) -> float:
    """AP@k of one GLDv2 retrieval query, as the official metric (DELF's ``google_landmarks_dataset/metrics.py``,
    ``MeanAveragePrecision``) computes it: over the first ``k`` predictions, each relevant image not predicted
    before adds ``(relevant hits so far) / (position, 1-based)``; a repeated prediction keeps its position but
    counts once; the sum is divided by ``min(len(relevant), k)``. No predictions give 0.

    ``prediction``: database indices, best first (any length; only the first k count). ``relevant``: the
    query's relevant database indices (must not be empty: such queries are not part of the solution)."""
    if not relevant:
        raise ValueError("gldv2_average_precision needs at least one relevant image")
    ap, hits, seen = 0.0, 0, set()
    for i, p in enumerate(list(prediction)[:k]):
        p = int(p)
        if p in seen:
            continue
        seen.add(p)
        if p in relevant:
            hits += 1
            ap += hits / (i + 1)
    return ap / min(len(relevant), k)


def evaluate_gldv2(
    ranks: np.ndarray,
    gnd: Sequence[dict[str, Any]],
    n_db: int,
    k: int = GLDV2_K,
    retrieved_nothing: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """The official GLDv2 retrieval metric: mAP@k (percent) over the Public and over the Private queries.

    ``ranks (n_queries, n_ranked)`` database indices, best first; ``n_ranked`` may be anything from 0 (a query
    without predictions scores 0) to ``n_db``; only the first ``k`` count. ``gnd[i]``: ``easy`` (the relevant
    index images) and ``usage`` (Public or Private; Ignored queries are not in the lists). Returns the shape of
    :func:`evaluate_rankings`: ``{"mAP@100": {"Public", "Private"}, "per_query_ap": {usage: [AP or None for the
    other usage's queries]}, "n_evaluated": {usage: n}}``. A usage without queries has mAP None. See
    NOTHING_RETRIEVED for ``retrieved_nothing``. ValueError naming the query for a ``usage`` other than Public or
    Private or for an empty ``easy``, or for ``ranks`` whose shape does not fit the queries and the database
    (``check_orientation``)."""
    ranks = np.asarray(ranks)
    check_orientation(ranks, len(gnd), n_db)
    key = f"mAP@{k}"
    out: dict[str, Any] = {key: {}, "per_query_ap": {}, "n_evaluated": {}}
    for usage in GLDV2_USAGES:
        aps: list[float | None] = []
        for i, g in enumerate(gnd):
            if g.get("usage") not in GLDV2_USAGES:
                raise ValueError(f"gnd[{i}]: usage {g.get('usage')!r} is not one of {GLDV2_USAGES}")
            if g["usage"] != usage:
                aps.append(None)
            else:
                if not len(g.get("easy", [])):
                    raise ValueError(f"gnd[{i}]: a {usage} query without relevant index images ('easy' is empty)")
                predicted = [] if _nothing(retrieved_nothing, i) else ranks[i, :k]
                aps.append(gldv2_average_precision(predicted, set(map(int, g["easy"])), k))
        valid = [a for a in aps if a is not None]
        out["n_evaluated"][usage] = len(valid)
        out[key][usage] = round(100.0 * float(np.mean(valid)), 4) if valid else None
        out["per_query_ap"][usage] = aps
    return out


def evaluate_ground_truth(
    ranks: np.ndarray,
    gnd: dict[str, Any],
    n_db: int,
    ks: Sequence[int] = (1, 5, 10),
    retrieved_nothing: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """The metrics a dataset's protocol defines, from its ground-truth JSON (``gnd.json`` of the lists stage):
    ``protocol: gldv2`` -> :func:`evaluate_gldv2` (mAP@100 Public / Private), otherwise revisitop's
    :func:`evaluate_rankings` (E/M/H). Both return ``per_query_ap`` and ``n_evaluated`` keyed by the protocol's
    subsets (E/M/H or Public/Private), so result writers iterate over those keys. See NOTHING_RETRIEVED for
    ``retrieved_nothing``."""
    if gnd.get("protocol") == "gldv2":
        return evaluate_gldv2(ranks, gnd["gnd"], n_db, retrieved_nothing=retrieved_nothing)
    return evaluate_rankings(ranks, gnd["gnd"], n_db, ks, retrieved_nothing)


def needs_full_ranking(gnd: dict[str, Any] | None) -> bool:
    """revisitop's mAP needs every database image ranked; GLDv2's mAP@100 only the top 100."""
    return gnd is not None and gnd.get("protocol") != "gldv2"


def bootstrap_difference(
    a: Sequence[float | None], b: Sequence[float | None], n: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Mean paired difference b - a (in AP points x 100) over queries defined in both, with a 95% percentile
    bootstrap interval of ``n`` resamples of the queries (seeded). ``a``, ``b``: per-query AP of the baseline and
    the method, query for query (None: not evaluated). Returns ``mean``, ``ci95`` (``[lo, hi]``), ``n_queries``,
    ``improved``, ``worse`` and ``n_bootstrap`` (``n``: the interval depends on it, and the results JSON records
    it nowhere else). ValueError when their lengths differ (a pairing by position would pair other queries)."""
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap: {len(a)} baseline APs against {len(b)} (one per query in both)")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return {"mean": None, "ci95": None, "n_queries": 0, "n_bootstrap": n}
    d = 100.0 * (np.array([y for _, y in pairs]) - np.array([x for x, _ in pairs]))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {
        "mean": float(d.mean()),
        "ci95": [float(lo), float(hi)],
        "n_queries": len(d),
        "improved": int((d > 0).sum()),
        "worse": int((d < 0).sum()),
        "n_bootstrap": n,
    }

"""The results writer every method uses: ranking file, neighbour CSV and results JSON (the README's
contract), images without features ranked last."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from retrieval.evaluation.metrics import bootstrap_difference, evaluate_ground_truth, headline
from retrieval.featureless import rank_featureless_last
from retrieval.runtime import atomic_path, write_json
from retrieval.stores.global_store import read_featureless

log = logging.getLogger(__name__)


def without_features(knn_path: str | Path, lists: dict[str, Any], ranking: np.ndarray, scores: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every method's final ranking passes here: the images without features that the knn file records rank last
    with score -inf, a featureless query gets the database order (featureless.py); returns the ranking, the
    scores and the results-JSON fields ``queries_without_features`` (names) and ``db_images_without_features``."""

    q_none, db_none = read_featureless(knn_path, len(lists["query"]), len(lists["db"]))
    ranking, scores = rank_featureless_last(ranking, scores, q_none, db_none)
    flags = {"queries_without_features": [q["name"] for q, f in zip(lists["query"], q_none) if f],
             "db_images_without_features": int(db_none.sum())}
    return ranking, scores, flags


def write_neighbours_csv(path: str | Path, lists: dict[str, Any], ids: np.ndarray, sims: np.ndarray, top: int) -> None:
    """``query,rank,image,score`` rows of the top ``top`` of each query; an image without features (or any pair of a
    query without features) has the score ``-inf``: not a match."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "rank", "image", "score"])
        for qi, q in enumerate(lists["query"]):
            for r in range(min(top, ids.shape[1])):
                w.writerow([q["path"], r + 1, lists["db"][ids[qi, r]]["path"], f"{sims[qi, r]:.6f}"])


def write_ranking(path: str | Path, ranks: np.ndarray, n_db: int, extra: dict[str, np.ndarray] | None = None) -> None:
    """The ranking file: ``ranks (n_queries, n_db)`` int32, plus any extra per-query arrays."""

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ranks", data=ranks.astype(np.int32))
        for name, arr in (extra or {}).items():
            f.create_dataset(name, data=arr)
        f.attrs.update({"schema_version": 1, "kind": "ranking", "n_db": n_db, "layout": "(n_queries, n_db)"})


def result_header(dataset: str, method: str, preset: str, lists: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": dataset, "method": method, "preset": preset, "n_queries": len(lists["query"]),
            "n_db": len(lists["db"]), "crop_queries": lists["crop_queries"]}


def add_subset_note(result: dict[str, Any], gnd: dict[str, Any] | None) -> None:
    """Results of a ground truth restricted to the images present (GLDv2 ``present_only``) say so."""
    if gnd is not None and gnd.get("subset"):
        result["ground_truth_subset"] = gnd["subset"]


def cost_timing(n_queries: int, reads: float = 0.0, rerank: float = 0.0, offline: float = 0.0, **extra: Any) -> dict[str, Any]:
    """The timing block every method writes: seconds and milliseconds per query of descriptor reads and
    re-ranking (the first stage is the knn file's search time), and per-database work done once (offline)."""
    n = max(1, n_queries)
    return {"n_queries": n_queries, "reads_seconds": round(reads, 6), "rerank_seconds": round(rerank, 6),
            "offline_seconds": round(offline, 6),
            "ms_per_query": {"reads": round(1000 * reads / n, 3), "rerank": round(1000 * rerank / n, 3)}, **extra}


def write_reranked_evaluation(method: str, ranking: np.ndarray, scores: np.ndarray, base_ids: np.ndarray,
                              lists: dict[str, Any], gnd: dict[str, Any] | None, dataset: str, out_json: str,
                              out_ranking: str, out_csv: str, baseline_json: str, knn_path: str, n_bootstrap: int, ks,
                              csv_top: int, versions: dict[str, str], hyperparameters: dict[str, Any], preset: str,
                              timing: dict[str, Any], extra_datasets: dict[str, np.ndarray] | None = None) -> None:
    """Ranking file, neighbour CSV and results JSON of a method that re-orders the global ranking: its metrics
    next to the global baseline's, the paired per-query difference with a bootstrap interval, per-query AP."""

    n_db = len(lists["db"])
    ranking, scores, flags = without_features(knn_path, lists, ranking, scores)
    write_ranking(out_ranking, ranking, n_db, extra_datasets)
    write_neighbours_csv(out_csv, lists, ranking, scores, csv_top)
    result = result_header(dataset, method, preset, lists)
    if gnd is None:
        log.warning("%s has no ground truth: writing rankings and neighbours only", dataset)
        result["metrics"] = None
    else:
        m = evaluate_ground_truth(ranking, gnd, n_db, ks)
        base = evaluate_ground_truth(base_ids, gnd, n_db, ks)
        names = [q["name"] for q in lists["query"]]
        result["metrics"] = headline(m)
        result["baseline"] = {"method": "global", "metrics": headline(base)}
        result["paired_difference"] = {p: bootstrap_difference(base["per_query_ap"][p], m["per_query_ap"][p], n_bootstrap)
                                       for p in m["per_query_ap"]}
        result["per_query_ap"] = {p: {"query": names, "ap": m["per_query_ap"][p], "baseline_ap": base["per_query_ap"][p]}
                                  for p in m["per_query_ap"]}
        add_subset_note(result, gnd)
        log.info("%s %s: %s (global %s)", dataset, method, result["metrics"], result["baseline"]["metrics"])
    result.update(flags)
    result["hyperparameters"] = hyperparameters
    result["versions"] = versions
    result["artifacts"] = {"ranking": str(out_ranking), "neighbours_csv": str(out_csv), "knn": str(knn_path),
                           "baseline": str(baseline_json)}
    result["timing"] = timing
    write_json(out_json, result)

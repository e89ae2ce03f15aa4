"""The ``evaluate_global`` and ``publish`` stages: the global-only results and the top-level results JSON."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from retrieval.evaluation.metrics import evaluate_ground_truth, needs_full_ranking
from retrieval.evaluation.results import (
    cost_timing,
    without_features,
    write_neighbours_csv,
    write_ranking,
    write_results,
)
from retrieval.runtime import fault_point, load_npz, read_json, write_json
from retrieval.stores.global_store import read_neighbours

log = logging.getLogger(__name__)


def evaluate_global(
    knn_path: str | Path,
    lists_path: str | Path,
    gnd_path: str | Path,
    out_json: str | Path,
    out_ranking: str | Path,
    out_csv: str | Path,
    dataset: str,
    method: str,
    ks: Sequence[int],
    csv_top: int,
    versions: dict[str, str],
    hyperparameters: dict[str, Any],
    preset: str,
    provenance: dict[str, Any],
) -> None:

    t0 = time.time()
    ids, sims, _ = read_neighbours(knn_path)
    lists = read_json(lists_path)
    gnd = read_json(gnd_path)
    n_db = len(lists["db"])
    if ids.shape[0] != len(lists["query"]):
        raise ValueError(f"{knn_path}: {ids.shape[0]} rows but {len(lists['query'])} queries in {lists_path}")
    if needs_full_ranking(gnd) and ids.shape[1] != n_db:
        raise ValueError(
            f"{knn_path}: rankings hold {ids.shape[1]} of {n_db} images; revisitop mAP needs the full "
            "ranking (set knn.k: 0 and knn.search: exact); a truncated shortlist is never scored as if "
            "the missing images ranked last"
        )
    ids, sims, flags = without_features(knn_path, lists, ids, sims)
    write_ranking(out_ranking, ids, n_db)
    fault_point("evaluate")  # the ranking is in place, the JSON not yet
    write_neighbours_csv(out_csv, lists, ids, sims, csv_top)
    write_results(
        out_json,
        dataset=dataset,
        method=method,
        preset=preset,
        lists=lists,
        gnd=gnd,
        evaluation=None if gnd is None else evaluate_ground_truth(ids, gnd, n_db, ks),
        flags=flags,
        extra={"provenance": provenance},
        hyperparameters=hyperparameters,
        versions=versions,
        artifacts={
            "ranking": str(out_ranking),
            "neighbours_csv": str(out_csv),
            "knn": str(knn_path),
            "lists": str(lists_path),
        },
        timing=cost_timing(len(lists["query"]), evaluate_seconds=round(time.time() - t0, 3)),
    )


def publish(
    src_json: str | Path,
    out_json: str | Path,
    fitted_on: dict[str, Any] | None = None,
    whiten_path: str | Path | None = None,
) -> None:
    """The top-level ``results/{dataset}_{method}.json``: a copy of the versioned evaluation it names, with
    ``fitted_on`` (what each fitted component was fitted on; whether PCA-whitening was applied, from its file)."""
    result = read_json(src_json)
    result["artifacts"]["evaluation"] = str(src_json)
    fitted_on = dict(fitted_on or {})
    if whiten_path and "whitening" in fitted_on:
        w = load_npz(whiten_path)
        fitted_on["whitening"] = {
            **fitted_on["whitening"],
            "applied": bool(w.get("applied", True)),
            "decision": str(w["reason"]) if "reason" in w else "on",
        }
    result["fitted_on"] = fitted_on
    write_json(out_json, result)

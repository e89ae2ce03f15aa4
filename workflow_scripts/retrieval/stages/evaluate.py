"""The ``evaluate_global`` and ``publish`` stages: the global-only results and the top-level results JSON."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from retrieval.evaluation.metrics import evaluate_ground_truth, needs_full_ranking
from retrieval.evaluation.results import (
    EvaluationContext,
    cost_timing,
    retrieved_nothing,
    without_features,
    write_neighbours_csv,
    write_ranking,
    write_results,
)
from retrieval.runtime import fault_point, load_npz, read_json, write_json
from retrieval.stores.global_store import read_neighbours

log = logging.getLogger(__name__)


def evaluate_global(ctx: EvaluationContext, knn_path: str | Path, provenance: dict[str, Any]) -> None:
    """Method ``global``: the shortlist in ``knn_path`` (``ids (n_queries, k)``, ``sims``) as the ranking, with
    revisitop or GLDv2 metrics, the ranking file and the neighbour CSV; ``provenance`` (where the data came from)
    is recorded as is. ValueError when the shortlist's rows do not match the queries, or when revisitop mAP would
    be computed from a shortlist shorter than the database."""

    t0 = time.time()
    ids, sims, attrs = read_neighbours(knn_path)
    lists = read_json(ctx.lists_path)
    gnd = read_json(ctx.gnd_path)
    n_db = len(lists["db"])
    if ids.shape[0] != len(lists["query"]):
        raise ValueError(f"{knn_path}: {ids.shape[0]} rows but {len(lists['query'])} queries in {ctx.lists_path}")
    if needs_full_ranking(gnd) and ids.shape[1] != n_db:
        # an imported shortlist: its file is the cause, and the knn settings do not apply (helper-99's trial)
        imported = attrs.get("search") == "imported"
        raise ValueError(
            (f"{attrs.get('source')} (imported as {knn_path})" if imported else f"{knn_path}")
            + f": rankings hold {ids.shape[1]} of {n_db} images; revisitop mAP needs the full ranking ("
            + (
                "export the shortlist with every database image, K = the database size"
                if imported
                else "set knn.k: 0 and knn.search: exact"
            )
            + "); a truncated shortlist is never scored as if the missing images ranked last"
        )
    ids, sims, flags = without_features(knn_path, lists, ids, sims)
    write_ranking(ctx.out_ranking, ids, n_db)
    fault_point("evaluate")  # the ranking is in place, the JSON not yet
    write_neighbours_csv(ctx.out_csv, lists, ids, sims, ctx.csv_top)
    write_results(
        ctx,
        method="global",
        lists=lists,
        gnd=gnd,
        evaluation=None
        if gnd is None
        else evaluate_ground_truth(ids, gnd, n_db, ctx.ks, retrieved_nothing(lists, flags)),
        flags=flags,
        extra={"provenance": provenance},
        artifacts={
            "ranking": str(ctx.out_ranking),
            "neighbours_csv": str(ctx.out_csv),
            "knn": str(knn_path),
            "lists": str(ctx.lists_path),
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

"""The ``evaluate_sv`` stage: spatial verification of the global shortlist."""

from __future__ import annotations

from typing import Any

from retrieval.evaluation.results import cost_timing, write_reranked_evaluation
from retrieval.methods.ames.rerank import similarity_along
from retrieval.methods.sv import SVConfig, rerank_by_inliers, verify_shortlists
from retrieval.runtime import read_json
from retrieval.stores.global_store import read_neighbours
from retrieval.stores.local_store import open_local


def evaluate_sv_stage(
    query_local: str,
    db_local: str,
    knn_path: str,
    lists_path: str,
    gnd_path: str,
    baseline_json: str,
    out_json: str,
    out_ranking: str,
    out_csv: str,
    dataset: str,
    cfg: dict[str, Any],
    n_bootstrap: int,
    ks,
    csv_top: int,
    versions: dict[str, str],
    hyperparameters: dict[str, Any],
    preset: str,
) -> None:
    """Re-rank the global shortlist by spatial verification and evaluate it next to the global baseline."""

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
    write_reranked_evaluation(
        "sv",
        ranking,
        similarity_along(ranking, ids, sims),
        ids,
        lists,
        gnd,
        dataset,
        out_json,
        out_ranking,
        out_csv,
        baseline_json,
        knn_path,
        n_bootstrap,
        ks,
        csv_top,
        versions,
        hyperparameters,
        preset,
        timing=cost_timing(
            ids.shape[0],
            reads=timing["reads_seconds"],
            rerank=timing["seconds"] - timing["reads_seconds"],
            pairs=timing["pairs"],
            q_desc=timing["q_desc"],
            db_desc=timing["db_desc"],
        ),
        extra_datasets={"inliers": inliers},
    )

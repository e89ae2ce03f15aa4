"""The ``evaluate_sv`` stage: spatial verification of the global shortlist."""

from __future__ import annotations

from typing import Any

from retrieval.evaluation.results import EvaluationContext, cost_timing, rerank_depth, write_reranked_evaluation
from retrieval.methods.sv import SVConfig, rerank_by_inliers, verify_shortlists
from retrieval.runtime import read_json
from retrieval.search.exact import similarity_along
from retrieval.stores.global_store import read_neighbours
from retrieval.stores.local_store import open_local


def evaluate_sv_stage(
    ctx: EvaluationContext, query_local: str, db_local: str, knn_path: str, cfg: dict[str, Any]
) -> None:
    """Re-rank the global shortlist in ``knn_path`` by spatial verification (``cfg``: config ``sv``) of the local
    stores ``query_local`` / ``db_local`` and evaluate it next to the global baseline; the ranking file also holds
    ``inliers (n_queries, num_rerank)`` int32. ValueError when the shortlist's or the stores' row counts do not
    match the lists."""

    conf = SVConfig(**cfg)
    ids, sims, _ = read_neighbours(knn_path)
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    n_db = len(lists["db"])
    if ids.shape[0] != len(lists["query"]):
        raise ValueError(f"{knn_path}: {ids.shape[0]} rows but {len(lists['query'])} queries in {ctx.lists_path}")
    with open_local(query_local) as fq, open_local(db_local) as fd:
        if fq["descriptors"].shape[0] != ids.shape[0] or fd["descriptors"].shape[0] != n_db:
            raise ValueError(f"{query_local} / {db_local}: row counts do not match {ctx.lists_path}")
        inliers, timing = verify_shortlists(fq, fd, ids, conf)
    applied = rerank_depth("sv.num_rerank", conf.num_rerank, ids.shape[1], n_db)
    ranking = rerank_by_inliers(ids, sims, inliers, conf.num_rerank)
    # the CSV's score column is the global similarity, listed in the verified order; inliers next to it
    write_reranked_evaluation(
        ctx,
        "sv",
        ranking,
        similarity_along(ranking, ids, sims),
        ids,
        lists,
        gnd,
        knn_path,
        timing=cost_timing(
            ids.shape[0],
            reads=timing["reads_seconds"],
            rerank=timing["seconds"] - timing["reads_seconds"],
            pairs=timing["pairs"],
            q_desc=timing["q_desc"],
            db_desc=timing["db_desc"],
        ),
        extra_datasets={"inliers": inliers},
        extra={"num_rerank_applied": applied},
        csv_columns={"inliers": (ids[:, : inliers.shape[1]], inliers)},
    )

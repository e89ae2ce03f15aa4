"""The ``compare`` stage: every method's results on one shortlist, as JSON and Markdown."""

from __future__ import annotations

from pathlib import Path

from retrieval.evaluation.compare import (
    _check_same_shortlist,
    compare_rows,
    render_markdown,
    shortlist_source,
    uses_random_weights,
)
from retrieval.evaluation.results import read_published
from retrieval.runtime import atomic_path, open_h5, write_json


def compare_stage(
    result_paths: dict[str, str], knn_path: str | Path, dataset: str, out_json: str | Path, out_md: str | Path
) -> None:

    results = {m: read_published(p, m) for m, p in result_paths.items()}
    for m, r in results.items():
        if r.get("metrics") is None:
            raise ValueError(f"{result_paths[m]}: no metrics (dataset without ground truth); nothing to compare")
    _check_same_shortlist(results)
    with open_h5(knn_path) as f:
        search = f.attrs.get("search_seconds")
    rows = compare_rows(results, None if search is None else float(search))
    random_weights = any(uses_random_weights(r) for r in results.values())
    # artifacts: what the table was made from, so that a later run that publishes one of them again says this
    # table is stale (retrieval.evaluation.results.stale_published)
    artifacts = {**{f"result_{m}": str(p) for m, p in result_paths.items()}, "knn": str(knn_path)}
    write_json(
        out_json,
        {
            "dataset": dataset,
            "knn": str(knn_path),
            "shortlist_source": shortlist_source(results),
            "random_weights": random_weights,
            "rows": rows,
            "artifacts": artifacts,
        },
    )
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(render_markdown(dataset, rows, random_weights, shortlist_source(results)))

"""Rule compare: one table of every method on the same global shortlist (metrics, paired difference, cost)."""

from retrieval.runtime import setup_logging

setup_logging(snakemake.log[0])

from retrieval.stages.compare import compare_stage  # noqa: E402

compare_stage(
    result_paths={m: snakemake.input[f"result_{m}"] for m in snakemake.params.methods},
    knn_path=snakemake.input.knn,
    dataset=snakemake.wildcards.dataset,
    out_json=snakemake.output.json,
    out_md=snakemake.output.md,
)

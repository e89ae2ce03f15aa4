"""Rule compare: one table of every method on the same global shortlist (metrics, paired difference, cost)."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.compare import compare_stage  # noqa: E402

compare_stage(
    result_paths={m: snakemake.input[f"result_{m}"] for m in snakemake.params.methods},
    knn_path=snakemake.input.knn,
    dataset=snakemake.wildcards.dataset,
    out_json=snakemake.output.json,
    out_md=snakemake.output.md,
)

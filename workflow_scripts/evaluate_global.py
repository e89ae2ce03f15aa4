"""Rule evaluate_global: revisitop metrics, the full ranking and the neighbour CSV of the global shortlist."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.evaluate import evaluate_global  # noqa: E402

evaluate_global(
    knn_path=snakemake.input.knn,
    lists_path=snakemake.input.lists,
    gnd_path=snakemake.input.gnd,
    out_json=snakemake.output.json,
    out_ranking=snakemake.output.ranking,
    out_csv=snakemake.output.csv,
    dataset=snakemake.wildcards.dataset,
    method="global",
    ks=snakemake.params.ks,
    csv_top=snakemake.params.csv_top,
    versions=snakemake.params.versions,
    hyperparameters=snakemake.params.hyperparameters,
    preset=snakemake.params.preset,
    provenance=snakemake.params.provenance,
)
write_rule_manifest(snakemake, "evaluate_global")

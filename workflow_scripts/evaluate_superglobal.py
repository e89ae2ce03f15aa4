"""Rule evaluate_superglobal: SuperGlobal re-ranking of the global shortlist, evaluated."""
from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.superglobal import evaluate_superglobal_stage  # noqa: E402

evaluate_superglobal_stage(
    query_global=snakemake.input.query,
    db_global=snakemake.input.db,
    knn_path=snakemake.input.knn,
    lists_path=snakemake.input.lists,
    gnd_path=snakemake.input.gnd,
    baseline_json=snakemake.input.baseline,
    out_json=snakemake.output.json,
    out_ranking=snakemake.output.ranking,
    out_csv=snakemake.output.csv,
    dataset=snakemake.wildcards.dataset,
    cfg=snakemake.params.superglobal,
    n_bootstrap=snakemake.params.n_bootstrap,
    ks=snakemake.params.ks,
    csv_top=snakemake.params.csv_top,
    versions=snakemake.params.versions,
    hyperparameters=snakemake.params.hyperparameters,
    preset=snakemake.params.preset,
)
write_rule_manifest(snakemake, "evaluate_superglobal")

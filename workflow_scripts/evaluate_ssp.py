"""Rule evaluate_ssp: queries by the light model (with its SSP adapter), database by the gallery model."""
from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.ssp import evaluate_ssp_stage  # noqa: E402

evaluate_ssp_stage(
    light_query_local=snakemake.input.light_query,
    codebook=snakemake.input.codebook,
    whiten=snakemake.input.whiten,
    adapter=snakemake.input.adapter,
    query_global=snakemake.input.query,
    db_global=snakemake.input.db,
    lists_path=snakemake.input.lists,
    gnd_path=snakemake.input.gnd,
    out_json=snakemake.output.json,
    out_ranking=snakemake.output.ranking,
    out_csv=snakemake.output.csv,
    dataset=snakemake.wildcards.dataset,
    alpha=snakemake.params.alpha,
    power=snakemake.params.power,
    light_sift=snakemake.params.light_sift,
    gallery_sift=snakemake.params.gallery_sift,
    cost_images=snakemake.params.cost_images,
    n_bootstrap=snakemake.params.n_bootstrap,
    ks=snakemake.params.ks,
    csv_top=snakemake.params.csv_top,
    versions=snakemake.params.versions,
    hyperparameters=snakemake.params.hyperparameters,
    preset=snakemake.params.preset,
)
write_rule_manifest(snakemake, "evaluate_ssp")

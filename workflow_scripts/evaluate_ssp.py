"""Rule evaluate_ssp: queries by the light model (with its SSP adapter), database by the gallery model."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.results import EvaluationContext  # noqa: E402
from retrieval.stages.ssp import evaluate_ssp_stage  # noqa: E402

evaluate_ssp_stage(
    EvaluationContext.from_snakemake(snakemake),
    light_query_local=snakemake.input.light_query,
    codebook=snakemake.input.codebook,
    whiten=snakemake.input.whiten,
    adapter=snakemake.input.adapter,
    query_global=snakemake.input.query,
    db_global=snakemake.input.db,
    alpha=snakemake.params.alpha,
    power=snakemake.params.power,
    light_sift=snakemake.params.light_sift,
    gallery_sift=snakemake.params.gallery_sift,
    cost_images=snakemake.params.cost_images,
)
write_rule_manifest(snakemake, "evaluate_ssp")

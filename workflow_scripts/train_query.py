"""Rule train_query: the SSP light query model's adapter, trained against the anchors on unlabelled images."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.ssp import train_query_stage  # noqa: E402

train_query_stage(
    light_local=snakemake.input.light,
    codebook=snakemake.input.codebook,
    whiten=snakemake.input.whiten,
    gallery_global=snakemake.input.gallery,
    anchors=snakemake.input.anchors,
    out_model=snakemake.output.model,
    out_curves=snakemake.output.curves,
    manifest_path=snakemake.output.manifest,
    alpha=snakemake.params.alpha,
    power=snakemake.params.power,
    cfg=snakemake.params.config,
    version=snakemake.wildcards.ver,
    preset=snakemake.params.preset,
    fitted_on=snakemake.params.fitted_on,
    # ssp.train.select: validation: the light queries, database and ground truth of the validation split, in order
    validation=dict(zip(("light_query", "db", "gnd"), snakemake.input.validation)) or None,
)

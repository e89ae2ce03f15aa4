"""Rule anchors: SSP anchors, the codewords of a faiss product quantizer on gallery global descriptors."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.ssp import anchors_stage  # noqa: E402

anchors_stage(
    global_path=snakemake.input.descriptors,
    out_path=snakemake.output.anchors,
    manifest_path=snakemake.output.manifest,
    cfg=snakemake.params.config,
    version=snakemake.wildcards.ver,
    preset=snakemake.params.preset,
    fitted_on=snakemake.params.fitted_on,
)

"""Rule extract_local: local descriptors of one chunk of the db or query list."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.extract import extract_local_chunk, job_backbone_config  # noqa: E402

extract_local_chunk(
    lists_path=snakemake.input.lists,
    split=snakemake.wildcards.side,
    chunk=int(snakemake.wildcards.chunk),
    n_chunks=snakemake.params.n_chunks,
    out_path=snakemake.output[0],
    backbone=snakemake.params.backbone,
    # device and weights paths from the configuration, not params: they are in no version (Plan.extraction_params)
    backbone_config=job_backbone_config(snakemake.params.backbone, snakemake.params.backbone_config, snakemake.config),
    version=snakemake.wildcards.ver,
    on_bad_image=snakemake.params.on_bad_image,
    max_image_pixels=snakemake.params.max_image_pixels,
    db_chunks=list(snakemake.input.db_chunks),
)

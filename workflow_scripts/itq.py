"""Rule itq: the ITQ projection that initialises the binary AMES model, learned on training descriptors."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.ames import fit_itq_stage  # noqa: E402

fit_itq_stage(
    local_path=snakemake.input.local,
    out_path=snakemake.output.itq,
    manifest_path=snakemake.output.manifest,
    cfg=snakemake.params.config,
    version=snakemake.wildcards.ver,
    preset=snakemake.params.preset,
    training_split=snakemake.params.training_split,
)

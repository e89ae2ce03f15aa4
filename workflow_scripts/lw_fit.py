"""Rule lw_fit: supervised (Lw) whitening learned from the training split's same-label pairs."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.lw import fit_lw_stage  # noqa: E402

fit_lw_stage(
    global_path=snakemake.input.descriptors,
    lists_path=snakemake.input.lists,
    out_path=snakemake.output.lw,
    manifest_path=snakemake.output.manifest,
    cfg=snakemake.params.config,
    version=snakemake.wildcards.ver,
    preset=snakemake.params.preset,
    training_split=snakemake.params.training_split,
    global_version=snakemake.params.global_version,
)

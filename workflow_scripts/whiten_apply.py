"""Rule whiten_apply: whitened, L2-normalised global descriptors of one split."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.whiten import apply_pca_whitening_stage  # noqa: E402

apply_pca_whitening_stage(
    vlad_path=snakemake.input.vlad,
    whiten_path=snakemake.input.whiten,
    out_path=snakemake.output.descriptors,
    power=snakemake.params.power,
    version=snakemake.wildcards.ver,
)
write_rule_manifest(snakemake, "whiten_apply")

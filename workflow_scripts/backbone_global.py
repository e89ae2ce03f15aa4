"""Rule backbone_global: the shortlist backbone's global descriptors of one split, from its extraction."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.aggregate import backbone_global  # noqa: E402

backbone_global(
    local_path=snakemake.input.local,
    out_path=snakemake.output.descriptors,
    backbone=snakemake.params.backbone,
    version=snakemake.wildcards.ver,
)
write_rule_manifest(snakemake, "backbone_global")

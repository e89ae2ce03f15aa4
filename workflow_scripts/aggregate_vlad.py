"""Rule aggregate_vlad: VLAD global descriptors over the codebook."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.aggregate import aggregate_vlad  # noqa: E402

aggregate_vlad(
    local_path=snakemake.input.local,
    codebook_path=snakemake.input.codebook,
    out_path=snakemake.output.vlad,
    alpha=snakemake.params.alpha,
    version=snakemake.wildcards.ver,
)
write_rule_manifest(snakemake, "aggregate_vlad")

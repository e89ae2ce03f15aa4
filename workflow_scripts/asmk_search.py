"""Rules asmk_search / asmk_shortlist: every query scored against the ASMK inverted file, as a full ranking."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.asmk import asmk_search  # noqa: E402

asmk_search(
    query_local=snakemake.input.query,
    ivf_path=snakemake.input.ivf,
    codebook_path=snakemake.input.codebook,
    lists_path=snakemake.input.lists,
    out_path=snakemake.output.knn,
    cfg=snakemake.params.asmk,
    version=snakemake.wildcards.ver,
)
write_rule_manifest(snakemake, "asmk_search")

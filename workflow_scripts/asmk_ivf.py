"""Rule asmk_ivf: the database's ASMK inverted file (binarised aggregated residuals per image and visual word)."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.asmk import build_asmk_ivf  # noqa: E402

build_asmk_ivf(
    local_path=snakemake.input.local,
    codebook_path=snakemake.input.codebook,
    out_path=snakemake.output.ivf,
    cfg=snakemake.config["asmk"],  # its binary and database assignment are the params (snakemake.params.ivf)
    version=snakemake.wildcards.ver,
)
write_rule_manifest(snakemake, "asmk_ivf")

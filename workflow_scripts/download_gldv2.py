"""Rule download_gldv2: fetch GLDv2's retrieval (gldv2) or training (gldv2-train) parts (resumable, MD5-verified)."""

from retrieval.runtime import setup_logging

setup_logging(snakemake.log[0])

from retrieval.data.download_gldv2 import download_gldv2  # noqa: E402

download_gldv2(
    snakemake.wildcards.dataset,
    snakemake.params.data_root,
    parts=snakemake.params.parts,
    keep_archives=snakemake.params.keep_archives,
)

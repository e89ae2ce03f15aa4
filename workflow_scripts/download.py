"""Rule download_revisitop: fetch ROxford5k / RParis6k / revisitop1m images and their lists (resumable, verified)."""

from retrieval.runtime import setup_logging

setup_logging(snakemake.log[0])

from retrieval.data.download import download_revisitop  # noqa: E402

download_revisitop(
    snakemake.wildcards.dataset, snakemake.params.data_root, keep_archives=snakemake.params.keep_archives
)

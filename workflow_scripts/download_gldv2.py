"""Rule download_gldv2: fetch GLDv2's retrieval (gldv2) or training (gldv2-train) parts (resumable, MD5-verified)."""

import os

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.data.download_gldv2 import download_gldv2  # noqa: E402
from retrieval.plan import lists_root  # noqa: E402

# the workflow's lists of this dataset exist: it was read here before, from a folder no longer there (warned of)
_lists = lists_root(snakemake.wildcards.dataset)

download_gldv2(
    snakemake.wildcards.dataset,
    snakemake.params.data_root,
    parts=snakemake.params.parts,
    keep_archives=snakemake.params.keep_archives,
    read_before=_lists + os.sep if os.path.isdir(_lists) else None,
)

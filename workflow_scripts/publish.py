"""Rule publish: results/{dataset}_{method}.json from the versioned evaluation it names."""
from retrieval.runtime import setup_logging

setup_logging(snakemake.log[0])

from retrieval.pipeline import publish  # noqa: E402

publish(snakemake.input[0], snakemake.output[0])

"""Rule publish: results/{dataset}_{method}.json from the versioned evaluation it names."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.evaluate import publish  # noqa: E402

publish(snakemake.input.evaluation, snakemake.output[0], snakemake.params.fitted_on, snakemake.input.get("whiten"))

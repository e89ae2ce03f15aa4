"""Rule benchmark_extract: images per second of a deep backbone's extraction on the demo's real-size photos."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.benchmarks.extraction import extraction_benchmark  # noqa: E402

extraction_benchmark(snakemake.input.lists, snakemake.params.config, snakemake.output[0])

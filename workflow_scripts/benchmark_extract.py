"""Rule benchmark_extract: images per second of a deep backbone's extraction on the demo's real-size photos."""

from retrieval.runtime import limit_threads, read_json, setup_logging, write_json

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.benchmarks.throughput import extraction_throughput  # noqa: E402

cfg = snakemake.params.config
paths = [e["path"] for e in read_json(snakemake.input.lists)["db"][: cfg["images"]]]
result = extraction_throughput(paths, cfg["backbone"], cfg[cfg["backbone"]], cfg["repeats"])
write_json(snakemake.output[0], result)

"""Rule benchmark_ames: AMES re-ranking throughput (fast vs reference), FLOP/s against a GEMM peak, grid cost."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.benchmarks.throughput import ames_benchmark  # noqa: E402

ames_benchmark(
    snakemake.params.config,
    snakemake.output[0],
    sv_inputs={k: snakemake.input[k] for k in ("sv_query", "sv_db", "sv_knn") if k in snakemake.input.keys()},
    sv_config=snakemake.params.sv,
)

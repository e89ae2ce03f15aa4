"""Rule benchmark_scale: a simulated large database from real descriptors (search, recall, store size, re-rank, RSS)."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.benchmarks.scale import scale_benchmark  # noqa: E402
from retrieval.runtime import resolve_device  # noqa: E402

scale_benchmark(
    query_global=snakemake.input.query,
    db_global=snakemake.input.db,
    binary_model=snakemake.input.model,
    binary_store=snakemake.input.store,
    query_local=snakemake.input.query_local,
    out_json=snakemake.output[0],
    work_dir=snakemake.output[0] + ".work",
    cfg=snakemake.params.config,
    q_desc=snakemake.params.q_desc,
    db_desc=snakemake.params.db_desc,
    device=resolve_device(snakemake.params.device),
    precision=snakemake.params.precision,
)

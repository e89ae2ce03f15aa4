"""Rule benchmark_ames: AMES re-ranking throughput (fast vs reference), FLOP/s against a GEMM peak, grid cost."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.benchmarks.throughput import ames_throughput, grid_cost, sv_throughput  # noqa: E402
from retrieval.runtime import (  # noqa: E402
    package_versions,
    resolve_device,  # noqa: E402
    write_json,
)

cfg = snakemake.params.config
device = resolve_device(cfg["device"], "benchmark.ames.device")
out = ames_throughput(cfg["sizes"], cfg["local_dim"], cfg["batch"], cfg["repeats"], device)
grid = grid_cost(cfg["grid_queries"], cfg["grid_db"], cfg["grid_num_rerank"], cfg["grid_points"])
pairs = cfg["grid_queries"] * cfg["grid_num_rerank"]
size = [r for r in out["sizes"] if [r["q_desc"], r["db_desc"]] == list(cfg["grid_logits_size"])]
if size:  # the whole cost of a grid vs a single point: logits once (at the measured rate), then the sweep
    logits_s = pairs / size[0]["fast_pairs_per_s"]
    grid["logits_seconds_estimated"] = logits_s
    grid["grid_over_single_point"] = (logits_s + grid["grid_seconds"]) / (logits_s + grid["single_point_seconds"])
result = {"ames": out, "grid": grid}
if cfg["sv_dataset"]:
    inp = snakemake.input
    result["sv"] = {
        "dataset": cfg["sv_dataset"],
        **sv_throughput(inp.sv_query, inp.sv_db, inp.sv_knn, snakemake.params.sv),
    }
write_json(snakemake.output[0], {**result, "config": cfg, "packages": package_versions()})

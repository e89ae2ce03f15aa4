"""Rule report: one self-contained HTML page per dataset (metrics, grid, per-query AP, images, curves, times)."""

import os

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.report import write_report  # noqa: E402

inp = snakemake.input
methods = snakemake.params.methods
# the benchmark files of the timing table where they exist (not inputs: see rules/report.smk)
bench = [p for p in snakemake.params.benchmarks if os.path.isfile(p)]
write_report(
    out_html=snakemake.output.html,
    dataset=snakemake.wildcards.dataset,
    result_paths={m: inp[f"result_{m}"] for m in methods},
    ranking_paths={m: inp[f"ranking_{m}"] for m in methods},
    curves_paths={k.removeprefix("curves_"): inp[k] for k in inp.keys() if k.startswith("curves_")},
    benchmark_paths=bench,
    lists_path=inp.lists,
    gnd_path=inp.gnd,
    n_queries=snakemake.params.n_queries,
    top=snakemake.params.top,
)

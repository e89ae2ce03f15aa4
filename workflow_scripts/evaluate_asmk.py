"""Rule evaluate_asmk: the ASMK ranking in the results contract, next to the global baseline."""

from retrieval.runtime import evaluation_io, limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.asmk import evaluate_asmk  # noqa: E402

evaluate_asmk(
    asmk_knn=snakemake.input.asmk_knn,
    global_knn=snakemake.input.knn,
    **evaluation_io(snakemake),
    baseline_json=snakemake.input.baseline,
)
write_rule_manifest(snakemake, "evaluate_asmk")

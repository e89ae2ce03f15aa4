"""Rule evaluate_asmk: the ASMK ranking in the results contract, next to the global baseline."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.results import EvaluationContext  # noqa: E402
from retrieval.stages.asmk import evaluate_asmk  # noqa: E402

evaluate_asmk(
    EvaluationContext.from_snakemake(snakemake),
    asmk_knn=snakemake.input.asmk_knn,
    global_knn=snakemake.input.knn,
)
write_rule_manifest(snakemake, "evaluate_asmk")

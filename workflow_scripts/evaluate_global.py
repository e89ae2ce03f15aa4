"""Rule evaluate_global: revisitop metrics, the full ranking and the neighbour CSV of the global shortlist."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.results import EvaluationContext  # noqa: E402
from retrieval.stages.evaluate import evaluate_global  # noqa: E402

evaluate_global(
    EvaluationContext.from_snakemake(snakemake),
    knn_path=snakemake.input.knn,
    provenance=snakemake.params.provenance,
)
write_rule_manifest(snakemake, "evaluate_global")

"""Rule evaluate_superglobal: SuperGlobal re-ranking of the global shortlist, evaluated."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.results import EvaluationContext  # noqa: E402
from retrieval.stages.superglobal import evaluate_superglobal_stage  # noqa: E402

evaluate_superglobal_stage(
    EvaluationContext.from_snakemake(snakemake),
    query_global=snakemake.input.query,
    db_global=snakemake.input.db,
    knn_path=snakemake.input.knn,
    cfg=snakemake.params.superglobal,
    whiten_path=snakemake.input.get("whiten"),
)
write_rule_manifest(snakemake, "evaluate_superglobal")

"""Rule evaluate_lw: supervised (Lw) whitening of the global descriptors, searched and evaluated."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.results import EvaluationContext  # noqa: E402
from retrieval.stages.lw import evaluate_lw_stage  # noqa: E402

evaluate_lw_stage(
    EvaluationContext.from_snakemake(snakemake),
    query_global=snakemake.input.query,
    db_global=snakemake.input.db,
    lw_path=snakemake.input.lw,
    knn_path=snakemake.input.knn,
)
write_rule_manifest(snakemake, "evaluate_lw")

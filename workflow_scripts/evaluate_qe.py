"""Rule evaluate_qe: alpha query expansion, optionally after alpha database augmentation, evaluated."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.results import EvaluationContext  # noqa: E402
from retrieval.stages.qe import evaluate_qe_stage  # noqa: E402

evaluate_qe_stage(
    EvaluationContext.from_snakemake(snakemake),
    query_global=snakemake.input.query,
    db_global=snakemake.input.db,
    knn_path=snakemake.input.knn,
    method=snakemake.wildcards.method,
    qe_cfg=snakemake.params.qe,
    dba_cfg=snakemake.params.dba,
)
write_rule_manifest(snakemake, "evaluate_qe")

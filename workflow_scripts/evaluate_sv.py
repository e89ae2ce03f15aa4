"""Rule evaluate_sv: spatial verification (ratio test, one-to-one, RANSAC) of the global shortlist, evaluated."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.results import EvaluationContext  # noqa: E402
from retrieval.stages.sv import evaluate_sv_stage  # noqa: E402

evaluate_sv_stage(
    EvaluationContext.from_snakemake(snakemake),
    query_local=snakemake.input.query,
    db_local=snakemake.input.db,
    knn_path=snakemake.input.knn,
    cfg=snakemake.params.sv,
)
write_rule_manifest(snakemake, "evaluate_sv")

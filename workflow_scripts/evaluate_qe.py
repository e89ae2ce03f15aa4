"""Rule evaluate_qe: alpha query expansion, optionally after alpha database augmentation, evaluated."""

from retrieval.runtime import evaluation_io, limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.qe import evaluate_qe_stage  # noqa: E402

evaluate_qe_stage(
    query_global=snakemake.input.query,
    db_global=snakemake.input.db,
    knn_path=snakemake.input.knn,
    **evaluation_io(snakemake),
    baseline_json=snakemake.input.baseline,
    method=snakemake.wildcards.method,
    qe_cfg=snakemake.params.qe,
    dba_cfg=snakemake.params.dba,
)
write_rule_manifest(snakemake, "evaluate_qe")

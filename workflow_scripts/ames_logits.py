"""Rule ames_logits: AMES logits for the shortlist pairs of one dataset, computed once for every grid point."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.ames import logits_stage  # noqa: E402

logits_stage(
    model_path=snakemake.input.model,
    query_local=snakemake.input.query,
    db_store=snakemake.input.db,
    knn_path=snakemake.input.knn,
    gnd_path=snakemake.input.gnd,
    out_path=snakemake.output.logits,
    q_desc=snakemake.params.q_desc,
    db_desc=snakemake.params.db_desc,
    max_rerank=snakemake.params.max_rerank,
    junk_mode=snakemake.params.junk_mode,
    batch=snakemake.config["ames"]["batch_pairs"],  # not a param: pairs per forward pass, changing it re-runs nothing
    device=snakemake.config["ames"]["device"],  # not a param: a device change re-runs nothing
    version=snakemake.wildcards.ver,
    precision=snakemake.params.precision,
)
write_rule_manifest(snakemake, "ames_logits")

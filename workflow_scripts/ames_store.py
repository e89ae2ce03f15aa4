"""Rule ames_store: the database side of a dataset prepared once for one AMES model (packed bits or fp16 tokens)."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.ames import ames_store_stage  # noqa: E402

ames_store_stage(
    model_path=snakemake.input.model,
    db_local=snakemake.input.db,
    out_path=snakemake.output.store,
    manifest_path=snakemake.output.manifest,
    db_desc=snakemake.params.db_desc,
    method=snakemake.wildcards.method,
    device=snakemake.config["ames"]["device"],  # not a param: a device change re-runs nothing
    version=snakemake.wildcards.ver,
    config={"db_desc": snakemake.params.db_desc, "method": snakemake.wildcards.method},
    preset=snakemake.params.preset,
)

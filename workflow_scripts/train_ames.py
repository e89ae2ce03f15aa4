"""Rules train_ames / train_ames_binary: train the AMES re-ranker, or distil its binary student."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.ames import train_stage  # noqa: E402

train_stage(
    local_path=snakemake.input.local,
    lists_path=snakemake.input.lists,
    knn_path=snakemake.input.knn,
    out_model=snakemake.output.model,
    out_curves=snakemake.output.curves,
    manifest_path=snakemake.output.manifest,
    model_cfg=snakemake.params.model,
    train_cfg=snakemake.params.train,
    version=snakemake.wildcards.ver,
    preset=snakemake.params.preset,
    training_split=snakemake.params.training_split,
    device=snakemake.config["ames"]["device"],  # not a param: a device change re-runs nothing
    precision=snakemake.params.precision,
    teacher_path=snakemake.input.get("teacher"),
    itq_path=snakemake.input.get("itq"),
    validation=(
        {
            **snakemake.params.validation,
            "query": snakemake.input.val_query,
            "db": snakemake.input.val_db,
            "knn": snakemake.input.val_knn,
            "gnd": snakemake.input.val_gnd,
            "lists": snakemake.input.val_lists,
        }
        if snakemake.params.get("validation")
        else None
    ),
)

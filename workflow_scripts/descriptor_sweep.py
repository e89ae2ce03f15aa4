"""Rule descriptor_sweep: mAP against database descriptors per image (AMES full precision and binary, sv)."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.benchmarks.descriptor_sweep import descriptor_sweep_stage  # noqa: E402

inp = snakemake.input
descriptor_sweep_stage(
    model_paths={"ames": inp.ames_model, "ames_binary": inp.ames_binary_model},
    ames_results={"ames": inp.ames_result, "ames_binary": inp.ames_binary_result},
    query_local=inp.query,
    db_local=inp.db,
    knn_path=inp.knn,
    gnd_path=inp.gnd,
    dataset=snakemake.wildcards.dataset,
    sv_cfg=snakemake.params.sv,
    ames_counts=snakemake.params.sweep["ames"],
    sv_counts=snakemake.params.sweep["sv"],
    q_desc=snakemake.params.q_desc,
    batch=snakemake.params.batch,
    device=snakemake.params.device,
    out_json=snakemake.output.json,
    out_png=snakemake.output.png,
    out_md=snakemake.output.md,
    versions=snakemake.params.versions,
    precision=snakemake.params.precision,
)

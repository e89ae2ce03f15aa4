"""Rule evaluate_ames: sweep lambda x gamma x num_rerank, pick the point (validation split or fixed), evaluate."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.ames import evaluate_ames_stage  # noqa: E402

inp = snakemake.input
val = {k: inp[f"val_{k}"] for k in ("logits", "knn", "lists", "gnd")} if "val_logits" in inp.keys() else None
evaluate_ames_stage(
    logits_path=inp.logits,
    knn_path=inp.knn,
    lists_path=inp.lists,
    gnd_path=inp.gnd,
    baseline_json=inp.baseline,
    out_json=snakemake.output.json,
    out_ranking=snakemake.output.ranking,
    out_csv=snakemake.output.csv,
    out_grid=snakemake.output.grid,
    dataset=snakemake.wildcards.dataset,
    method=snakemake.wildcards.method,
    grid=snakemake.params.grid,
    select=snakemake.params.select,
    fixed=snakemake.params.fixed,
    val_paths=val,
    validation_split=snakemake.params.validation_split,
    junk_mode=snakemake.params.junk_mode,
    n_bootstrap=snakemake.params.n_bootstrap,
    csv_top=snakemake.params.csv_top,
    versions=snakemake.params.versions,
    hyperparameters=snakemake.params.hyperparameters,
    preset=snakemake.params.preset,
    fusion=snakemake.params.fusion,
)
write_rule_manifest(snakemake, "evaluate_ames")

"""Rule evaluate_ames: sweep lambda x gamma x num_rerank (x the geometric weight), pick the point (validation split or fixed), evaluate."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.evaluation.results import EvaluationContext  # noqa: E402
from retrieval.stages.ames_evaluate import evaluate_ames_stage  # noqa: E402

inp = snakemake.input
keys = ("logits", "knn", "lists", "gnd", "sv_json", "sv_ranking")
val = {k: inp[f"val_{k}"] for k in keys if f"val_{k}" in inp.keys()} if "val_logits" in inp.keys() else None
sv = {"json": inp.sv_json, "ranking": inp.sv_ranking} if "sv_json" in inp.keys() else None
evaluate_ames_stage(
    EvaluationContext.from_snakemake(snakemake),
    logits_path=inp.logits,
    knn_path=inp.knn,
    out_grid=snakemake.output.grid,
    method=snakemake.wildcards.method,
    grid=snakemake.params.grid,
    select=snakemake.params.select,
    fixed=snakemake.params.fixed,
    val_paths=val,
    validation_split=snakemake.params.validation_split,
    junk_mode=snakemake.params.junk_mode,
    fusion=snakemake.params.fusion,
    geometry=snakemake.params.geometry,
    sv_paths=sv,
)
write_rule_manifest(snakemake, "evaluate_ames")

"""Rule export_ames: this run's local descriptors, shortlist and lists in the AMES release layout."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.export import export_ames  # noqa: E402

export_ames(
    local_db=snakemake.input.db,
    local_query=snakemake.input.query,
    knn_path=snakemake.input.knn,
    lists_path=snakemake.input.lists,
    gnd_path=snakemake.input.gnd,
    out_dir=snakemake.output[0],
    dataset=snakemake.wildcards.dataset,
    desc=snakemake.params.desc,
    version=snakemake.params.version,
    inputs={k: str(v) for k, v in snakemake.input.items()},
    input_versions=snakemake.params.input_versions,
    preset=snakemake.params.preset,
)

"""Rule database_list: the database side of a plain folder or a gnd.csv dataset (paths, displayed sizes), listed
apart from its queries and ground truth."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.lists import make_database_list  # noqa: E402

make_database_list(
    dataset_dir=snakemake.params.dataset_dir,
    dataset=snakemake.wildcards.dataset,
    out_db=snakemake.output.db,
    out_manifest=snakemake.output.manifest,
    version=snakemake.wildcards.ver,
    preset=snakemake.params.preset,
    on_bad_image=snakemake.params.on_bad_image,
    max_image_pixels=snakemake.params.max_image_pixels,
)

"""Rule image_lists: database and query lists (paths, sizes, query boxes) and the normalised ground truth."""
from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.pipeline import make_image_lists  # noqa: E402

make_image_lists(
    dataset_dir=snakemake.params.dataset_dir,
    dataset=snakemake.wildcards.dataset,
    crop_queries=snakemake.params.crop_queries,
    out_lists=snakemake.output.lists,
    out_gnd=snakemake.output.gnd,
    out_manifest=snakemake.output.manifest,
    version=snakemake.wildcards.ver,
    preset=snakemake.params.preset,
    on_bad_image=snakemake.params.on_bad_image,
)

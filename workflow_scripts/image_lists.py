"""Rule image_lists: database and query lists (paths, sizes, query boxes) and the normalised ground truth; for
``{dataset}+1m`` the dataset's lists with the R1M distractors appended to its database."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.lists import make_image_lists, make_lists_with_distractors  # noqa: E402

if snakemake.params.plus is not None:
    make_lists_with_distractors(
        base_lists=snakemake.input.base_lists,
        base_gnd=snakemake.input.base_gnd,
        distractor_lists=snakemake.input.distractor_lists,
        dataset=snakemake.wildcards.dataset,
        out_lists=snakemake.output.lists,
        out_gnd=snakemake.output.gnd,
        out_manifest=snakemake.output.manifest,
        version=snakemake.wildcards.ver,
        preset=snakemake.params.preset,
        input_versions=snakemake.params.plus,
    )
else:
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
        max_image_pixels=snakemake.params.max_image_pixels,
        # read from the configuration, not params: the lists' version path already carries the non-default gldv2
        # settings (common.smk gldv2_identity), and a new param would re-run every existing dataset's lists
        gldv2=snakemake.config["gldv2"],
        database=snakemake.input.get("database"),
    )

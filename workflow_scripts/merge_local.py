"""Rule merge_local: a verified HDF5 virtual dataset over the extraction chunks, or over feature-cache packs."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.extract import merge_local  # noqa: E402

merge_local(
    chunk_paths=list(snakemake.input.chunks),
    lists_path=snakemake.input.lists,
    split=snakemake.wildcards.side,
    out_path=snakemake.output.store,
    manifest_path=snakemake.output.manifest,
    version=snakemake.wildcards.ver,
    config=snakemake.params.config,
    preset=snakemake.params.preset,
    lists_version=snakemake.params.lists_version,
    groups=snakemake.params.groups,
    cache=snakemake.params.cache,
    # from the configuration, not params (a new param would re-run every existing merge): refuses cached rows of
    # images that were unreadable under on_bad_image: skip
    on_bad_image=snakemake.config["on_bad_image"],
)

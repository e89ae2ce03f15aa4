"""Rule import_global: global descriptors computed elsewhere, checked against the image list and normalised."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.imports import import_global_stage  # noqa: E402

import_global_stage(
    src=snakemake.input.src,
    lists_path=snakemake.input.lists,
    split=snakemake.wildcards.side,
    out_path=snakemake.output.descriptors,
    version=snakemake.wildcards.ver,
)
write_rule_manifest(snakemake, "import_global")

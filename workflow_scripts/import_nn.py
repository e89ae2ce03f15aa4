"""Rule import_nn: the shortlist of an AMES nn_*.pkl (shortlist.source: ames_nn), validated, as knn.h5."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.knn import import_nn  # noqa: E402

import_nn(
    nn_path=snakemake.input.nn,
    lists_path=snakemake.input.lists,
    out_path=snakemake.output.knn,
    version=snakemake.wildcards.ver,
)
write_rule_manifest(snakemake, "import_nn")

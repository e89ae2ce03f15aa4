"""Rule knn_train: neighbours of every training image among the others (pair sampling for AMES)."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.ames import training_neighbours  # noqa: E402

training_neighbours(snakemake.input.db, snakemake.output.knn, snakemake.params.k, snakemake.wildcards.ver)
write_rule_manifest(snakemake, "knn_train")

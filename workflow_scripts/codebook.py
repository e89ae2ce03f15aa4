"""Rule codebook: faiss k-means on local descriptors of the training split."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.aggregate import fit_codebook  # noqa: E402

cfg = snakemake.params.config
fit_codebook(
    local_path=snakemake.input.local,
    out_path=snakemake.output.codebook,
    manifest_path=snakemake.output.manifest,
    k=cfg["k"],
    niter=cfg["niter"],
    max_descriptors=cfg["max_descriptors"],
    seed=cfg["seed"],
    version=snakemake.wildcards.ver,
    config=cfg,
    preset=snakemake.params.preset,
    training_split=snakemake.params.training_split,
    local_version=snakemake.params.local_version,
)

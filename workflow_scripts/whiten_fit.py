"""Rule whiten_fit: PCA-whitening learned on the training split's VLADs."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.whiten import fit_pca_whitening_stage  # noqa: E402

fit_pca_whitening_stage(
    vlad_path=snakemake.input.vlad,
    out_path=snakemake.output.whiten,
    manifest_path=snakemake.output.manifest,
    dim=snakemake.params.config["dim"],
    min_images_per_dim=snakemake.params.config["min_images_per_dim"],
    max_images=snakemake.params.config["max_images"],
    version=snakemake.wildcards.ver,
    config=snakemake.params.config,
    preset=snakemake.params.preset,
    training_split=snakemake.params.training_split,
    vlad_version=snakemake.params.vlad_version,
)

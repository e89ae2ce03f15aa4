"""Rule extract_pack: hash and extract the photos of one feature-cache pack (retrieval/feature_cache.py)."""

import json

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.extract import job_backbone_config  # noqa: E402
from retrieval.stages.extract_pack import extract_pack  # noqa: E402

job = json.loads(snakemake.params.pack)
extract_pack(
    items=job["items"],
    out_h5=snakemake.output.h5,
    out_index=snakemake.output.index,
    xv=snakemake.wildcards.xv,
    backbone=job["backbone"],
    backbone_config=job["config"],
    # device and weights paths from the configuration, not the pack's params: they are in no version
    # (Plan.extraction_params)
    run_config=job_backbone_config(job["backbone"], job["config"], snakemake.config),
    # from the configuration, not params: a pack's parameters are what it extracts (on_bad_image is not part of the
    # cache key; changing it must not re-run the packs that exist)
    on_bad_image=snakemake.config["on_bad_image"],
    max_image_pixels=snakemake.config["max_image_pixels"],
)

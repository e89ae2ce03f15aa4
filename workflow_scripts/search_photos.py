"""Rule search_photos: neighbours CSV, optional re-ranking and the contact sheet of new photos in a collection."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.search import search_stage  # noqa: E402

cfg = snakemake.params.search
search_stage(
    knn_path=snakemake.input.knn,
    photos_lists=snakemake.input.photos_lists,
    collection_lists=snakemake.input.collection_lists,
    photos_local=snakemake.input.get("photos_local"),
    collection_local=snakemake.input.get("collection_local"),
    out_csv=snakemake.output.csv,
    out_html=snakemake.output.html,
    out_json=snakemake.output.json,
    manifest_path=snakemake.output.manifest,
    collection=snakemake.wildcards.collection,
    photos=snakemake.wildcards.photos,
    rerank=cfg["rerank"],
    k=cfg["k"],
    sv_cfg=snakemake.params.sv,
    top=cfg["sheet_top"],
    max_photos=cfg["sheet_photos"],
    version=snakemake.wildcards.ver,
    inputs=dict(snakemake.input.items()),
    config={"search": cfg, "sv": snakemake.params.sv if cfg["rerank"] == "sv" else None},
)

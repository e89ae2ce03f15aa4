"""Rule search_knn: the top collection images of every new photo (faiss inner product, as rule knn): search.k, or
sv.num_rerank when search.rerank is sv and that is larger."""

from retrieval.runtime import limit_threads, setup_logging, write_rule_manifest

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.knn import nearest_neighbours  # noqa: E402

nearest_neighbours(
    query_path=snakemake.input.query,
    db_path=snakemake.input.db,
    out_path=snakemake.output.knn,
    k=snakemake.params.k,
    version=snakemake.wildcards.ver,
    search=snakemake.params.search,
    block=snakemake.config["knn"]["block"],  # not a param: memory only, changing it re-runs nothing
    ivfpq=snakemake.params.ivfpq,
    k_key=None,  # search.k or sv.num_rerank, not knn.k: above a small collection it is harmless
)
write_rule_manifest(snakemake, "search_knn")

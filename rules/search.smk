# New photos searched against an indexed collection: results/search/{collection}/{photos}.{csv,html,json}.
# search_knn fetches search.k neighbours per photo, or sv.num_rerank when spatial verification re-ranks more.
# {photos} is a plain folder under data_root: only its database split is extracted and aggregated; the
# collection's stored database descriptors are reused as they are.


rule search_knn:
    input:
        query=lambda w: PLAN.global_path(w.photos, "db", PLAN.search_space(w.collection)),  # in the collection's space
        db=lambda w: PLAN.global_path(w.collection, "db", PLAN.search_space(w.collection)),
    output:
        knn=SEARCH_KNN,
        manifest=beside(SEARCH_KNN, "knn.manifest.json"),
    log:
        "logs/search_knn/{collection}/{photos}/{ver}.log",
    benchmark:
        "benchmarks/search_knn/{collection}/{photos}/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=knn_mem_mb(4000, ranking=False),
        runtime=30,
    params:
        k=lambda w: (check_version(w, PLAN.v_search_knn(w.collection, w.photos)), PLAN.search_depth())[1],
        # what changes the result (knn.block, how exact search streams, is read from the configuration: changing it
        # re-runs nothing; the IVF-PQ settings only with knn.search: ivfpq)
        search=config["knn"]["search"],
        ivfpq=config["knn"]["ivfpq"] if config["knn"]["search"] == "ivfpq" else None,
        preset=PRESET,
    script:
        "../workflow_scripts/search_knn.py"


rule search_photos:
    input:
        unpack(search_inputs),
    output:
        csv=beside(SEARCH_KNN, "neighbours.csv"),
        html=beside(SEARCH_KNN, "sheet.html"),
        json=beside(SEARCH_KNN, "search.json"),
        manifest=beside(SEARCH_KNN, "manifest.json"),
    log:
        "logs/search_photos/{collection}/{photos}/{ver}.log",
    benchmark:
        "benchmarks/search_photos/{collection}/{photos}/{ver}.tsv"
    conda:
        ENV
    # spatial verification's matching runs on threads (search.rerank: sv); without it the job only writes files
    threads: config["threads"] if config["search"]["rerank"] == "sv" else 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        search=lambda w: (check_version(w, PLAN.v_search(w.collection, w.photos)), config["search"])[1],
        # only when sv re-ranks: another sv setting re-runs nothing when it does not
        sv=config["sv"] if config["search"]["rerank"] == "sv" else None,
    script:
        "../workflow_scripts/search_photos.py"


rule publish_search:
    input:
        csv=lambda w: f"{checked_search_dir(w)}/neighbours.csv",
        html=lambda w: f"{checked_search_dir(w)}/sheet.html",
        json=lambda w: f"{checked_search_dir(w)}/search.json",
    output:
        csv="results/search/{collection}/{photos}.csv",
        html="results/search/{collection}/{photos}.html",
        json="results/search/{collection}/{photos}.json",
    log:
        "logs/publish_search/{collection}/{photos}.log",
    wildcard_constraints:
        # any folder name matches, so that a refused one gets names.py's message instead of "no rule"
        collection=r"[^/]+",
        photos=r"[^/]+",
    localrule: True
    conda:
        ENV
    script:
        "../workflow_scripts/publish_search.py"

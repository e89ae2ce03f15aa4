# ASMK (Tolias et al., ICCV 2013 / IJCV 2016) through the `asmk` package: a first stage over local descriptors.
# asmk_codebook: visual words on the fit split (unsupervised_fit, as the VLAD codebook); asmk_ivf: the database's inverted file of binarised aggregated
# residuals; asmk_search: every query's full ranking (a neighbours file); evaluate_asmk: results/{dataset}_asmk.json.
# With shortlist.source: asmk the same search writes results/knn/{dataset}/{ver}/knn.h5, the shortlist that global,
# sv and AMES read.


rule asmk_codebook:
    input:
        local=lambda w: PLAN.local_store(w.space, "db"),
    output:
        codebook=ASMK_CODEBOOK,
        manifest=beside(ASMK_CODEBOOK, "manifest.json"),
    log:
        "logs/asmk_codebook/{space}/{ver}.log",
    benchmark:
        "benchmarks/asmk_codebook/{space}/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        config=lambda w: (check_version(w, PLAN.v_asmk_codebook(w.space)), config["asmk"]["codebook"])[1],
        training_split=lambda w: w.space,
        local_version=lambda w: PLAN.v_local(w.space),
        preset=PRESET,
    script:
        "../workflow_scripts/asmk_codebook.py"


rule asmk_ivf:
    input:
        local=lambda w: PLAN.local_store(w.dataset, "db"),
        codebook=lambda w: PLAN.asmk_codebook_path(PLAN.fit_split(w.dataset)),
    output:
        ivf=ASMK_IVF,
        manifest=beside(ASMK_IVF, "manifest.json"),
    log:
        "logs/asmk_ivf/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/asmk_ivf/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        # what the inverted file holds depends on (the search's kernel settings are read from the configuration by
        # the script: changing alpha or the threshold re-runs only the search)
        ivf=lambda w: (
            check_version(w, PLAN.v_asmk_ivf(w.dataset)),
            {
                "binary": config["asmk"]["binary"],
                "db_multiple_assignment": config["asmk"]["multiple_assignment"]["db"],
            },
        )[1],
        preset=PRESET,
    script:
        "../workflow_scripts/asmk_ivf.py"


rule asmk_search:
    input:
        query=lambda w: PLAN.local_store(w.dataset, "query"),
        ivf=lambda w: PLAN.asmk_ivf_path(w.dataset),
        codebook=lambda w: PLAN.asmk_codebook_path(PLAN.fit_split(w.dataset)),
        lists=lambda w: PLAN.lists_json(w.dataset),
    output:
        knn=ASMK_SEARCH,
        manifest=beside(ASMK_SEARCH, "manifest.json"),
    log:
        "logs/asmk_search/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/asmk_search/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: 1  # the query side's cost per query is measured on one thread
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        asmk=lambda w: (check_version(w, PLAN.v_asmk_search(w.dataset)), PLAN.asmk_kernel_config())[1],
        preset=PRESET,
    script:
        "../workflow_scripts/asmk_search.py"


if config["shortlist"]["source"] == "asmk":

    use rule asmk_search as asmk_shortlist with:
        output:
            knn=KNN,
            manifest=beside(KNN, "manifest.json"),
        log:
            "logs/knn/{dataset}/{ver}.log",
        benchmark:
            BENCH_KNN
        params:
            asmk=lambda w: (check_version(w, PLAN.v_knn(w.dataset)), PLAN.asmk_kernel_config())[1],
            preset=PRESET,


rule evaluate_asmk:
    input:
        asmk_knn=lambda w: PLAN.asmk_knn_path(w.dataset),
        knn=lambda w: PLAN.knn_path(w.dataset),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
        baseline=lambda w: PLAN.baseline_path(w.dataset),
    output:
        json=fill(EVAL, method="asmk"),
        ranking=beside(EVAL, "asmk_ranking.h5"),
        csv=beside(EVAL, "asmk_neighbours.csv"),
        manifest=beside(EVAL, "asmk.manifest.json"),
    log:
        "logs/evaluate_asmk/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/evaluate_asmk/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=ranking_mem_mb(2000),
        runtime=30,
    params:
        check=lambda w: check_version(w, PLAN.v_asmk_eval(w.dataset)),
        n_bootstrap=config["evaluate"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: PLAN.asmk_versions(w.dataset),
        hyperparameters=lambda w: {
            "global": PLAN.global_hyperparameters(w.dataset),
            **PLAN.local_hyperparameters(),
            "asmk": config["asmk"],
        },
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_asmk.py"

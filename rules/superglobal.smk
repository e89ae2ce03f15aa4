# SuperGlobal's re-ranking of the global shortlist (MDescAug + RerankwMDA): global descriptors only.


rule evaluate_superglobal:
    input:
        unpack(superglobal_whitening),
        query=lambda w: PLAN.global_path(w.dataset, "query"),
        db=lambda w: PLAN.global_path(w.dataset, "db"),
        knn=lambda w: PLAN.knn_path(w.dataset),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
        baseline=lambda w: PLAN.baseline_path(w.dataset),
    output:
        json=fill(EVAL, method="superglobal"),
        ranking=beside(EVAL, "superglobal_ranking.h5"),
        csv=beside(EVAL, "superglobal_neighbours.csv"),
        manifest=beside(EVAL, "superglobal.manifest.json"),
    log:
        "logs/evaluate_superglobal/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/evaluate_superglobal/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=ranking_mem_mb(4000),
        runtime=30,
    params:
        superglobal=lambda w: (check_version(w, PLAN.v_superglobal(w.dataset)), config["superglobal"])[1],
        n_bootstrap=config["evaluate"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **PLAN.versions(w.dataset),
            "evaluate": PLAN.v_superglobal(w.dataset),
            "global_evaluate": PLAN.v_eval(w.dataset),
        },
        hyperparameters=lambda w: {
            "global": PLAN.global_hyperparameters(w.dataset),
            "superglobal": config["superglobal"],
        },
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_superglobal.py"

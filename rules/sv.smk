# Spatial verification of the global shortlist (DELG-style): the classical local-feature re-ranker.


rule evaluate_sv:
    input:
        query=lambda w: PLAN.local_store(w.dataset, "query"),
        db=lambda w: PLAN.local_store(w.dataset, "db"),
        knn=lambda w: PLAN.knn_path(w.dataset),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
        baseline=lambda w: PLAN.baseline_path(w.dataset),
    output:
        json=fill(EVAL, method="sv"),
        ranking=beside(EVAL, "sv_ranking.h5"),
        csv=beside(EVAL, "sv_neighbours.csv"),
        manifest=beside(EVAL, "sv.manifest.json"),
    log:
        "logs/evaluate_sv/{dataset}/{ver}.log",
    benchmark:
        BENCH_SV
    conda:
        ENV
    # the matrix products and top-2 of the matching run on these threads (the same inliers on any number: README, "Speed")
    threads: config["threads"]
    resources:
        mem_mb=ranking_mem_mb(4000),
        runtime=60,
    params:
        sv=lambda w: (check_version(w, PLAN.v_sv(w.dataset)), config["sv"])[1],
        n_bootstrap=config["evaluate"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **PLAN.versions(w.dataset),
            **PLAN.local_versions(w.dataset),
            "evaluate": PLAN.v_sv(w.dataset),
            "global_evaluate": PLAN.v_eval(w.dataset),
        },
        hyperparameters=lambda w: {
            "global": PLAN.global_hyperparameters(w.dataset),
            **PLAN.local_hyperparameters(),
            "sv": config["sv"],
        },
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_sv.py"

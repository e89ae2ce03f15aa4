# Alpha query expansion (aqe) and alpha database augmentation + query expansion (adba) on global descriptors.


rule evaluate_qe:
    input:
        query=lambda w: PLAN.global_path(w.dataset, "query"),
        db=lambda w: PLAN.global_path(w.dataset, "db"),
        knn=lambda w: PLAN.knn_path(w.dataset),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
        baseline=lambda w: PLAN.baseline_path(w.dataset),
    output:
        json=EVAL,
        ranking=beside(EVAL, "{method}_ranking.h5"),
        csv=beside(EVAL, "{method}_neighbours.csv"),
        manifest=beside(EVAL, "{method}.manifest.json"),
    log:
        "logs/evaluate_qe/{dataset}/{ver}/{method}.log",
    benchmark:
        "benchmarks/evaluate_qe/{dataset}/{ver}/{method}.tsv"
    wildcard_constraints:
        method="aqe|adba",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=ranking_mem_mb(4000),
        runtime=30,
    params:
        qe=lambda w: (check_version(w, PLAN.v_qe(w.dataset, w.method)), config["aqe"])[1],
        dba=lambda w: config["adba"] if w.method == "adba" else None,
        n_bootstrap=config["evaluate"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **PLAN.versions(w.dataset),
            "evaluate": PLAN.v_qe(w.dataset, w.method),
            "global_evaluate": PLAN.v_eval(w.dataset),
        },
        hyperparameters=lambda w: {
            "global": PLAN.global_hyperparameters(w.dataset),
            "aqe": config["aqe"],
            # aqe's results name no adba settings (they read as if they fed it: a researcher's trial)
            **({"adba": config["adba"]} if w.method == "adba" else {}),
        },
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_qe.py"

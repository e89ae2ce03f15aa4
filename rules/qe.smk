# Alpha query expansion (aqe) and alpha database augmentation + query expansion (adba) on global descriptors.


rule evaluate_qe:
    input:
        query=lambda w: global_path(w.dataset, "query"),
        db=lambda w: global_path(w.dataset, "db"),
        knn=lambda w: f"results/knn/{w.dataset}/{v_knn(w.dataset)}/knn.h5",
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
        gnd=lambda w: f"{lists_dir(w.dataset)}/gnd.json",
        baseline=lambda w: f"results/eval/{w.dataset}/{v_eval(w.dataset)}/global.json",
    output:
        json="results/eval/{dataset}/{ver}/{method}.json",
        ranking="results/eval/{dataset}/{ver}/{method}_ranking.h5",
        csv="results/eval/{dataset}/{ver}/{method}_neighbours.csv",
        manifest="results/eval/{dataset}/{ver}/{method}.manifest.json",
    log:
        "logs/evaluate_qe/{dataset}/{ver}/{method}.log",
    wildcard_constraints:
        method="aqe|adba",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        qe=lambda w: (check_version(w, v_qe(w.dataset, w.method)), config["aqe"])[1],
        dba=lambda w: config["adba"] if w.method == "adba" else None,
        n_bootstrap=config["ames"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **versions(w.dataset),
            "evaluate": v_qe(w.dataset, w.method),
            "global_evaluate": v_eval(w.dataset),
        },
        hyperparameters=lambda w: {
            "global": global_hyperparameters(w.dataset),
            "aqe": config["aqe"],
            "adba": config["adba"] if w.method == "adba" else None,
        },
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_qe.py"

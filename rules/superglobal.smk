# SuperGlobal's re-ranking of the global shortlist (MDescAug + RerankwMDA): global descriptors only.


rule evaluate_superglobal:
    input:
        query=lambda w: global_path(w.dataset, "query"),
        db=lambda w: global_path(w.dataset, "db"),
        knn=lambda w: f"results/knn/{w.dataset}/{v_knn(w.dataset)}/knn.h5",
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
        gnd=lambda w: f"{lists_dir(w.dataset)}/gnd.json",
        baseline=lambda w: f"results/eval/{w.dataset}/{v_eval(w.dataset)}/global.json",
    output:
        json="results/eval/{dataset}/{ver}/superglobal.json",
        ranking="results/eval/{dataset}/{ver}/superglobal_ranking.h5",
        csv="results/eval/{dataset}/{ver}/superglobal_neighbours.csv",
        manifest="results/eval/{dataset}/{ver}/superglobal.manifest.json",
    log:
        "logs/evaluate_superglobal/{dataset}/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        superglobal=lambda w: (check_version(w, v_superglobal(w.dataset)), config["superglobal"])[1],
        n_bootstrap=config["ames"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **versions(w.dataset),
            "evaluate": v_superglobal(w.dataset),
            "global_evaluate": v_eval(w.dataset),
        },
        hyperparameters=lambda w: {"global": global_hyperparameters(w.dataset), "superglobal": config["superglobal"]},
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_superglobal.py"

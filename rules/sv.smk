# Spatial verification of the global shortlist (DELG-style): the classical local-feature re-ranker.


rule evaluate_sv:
    input:
        query=lambda w: local_store(w.dataset, "query"),
        db=lambda w: local_store(w.dataset, "db"),
        knn=lambda w: f"results/knn/{w.dataset}/{v_knn(w.dataset)}/knn.h5",
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
        gnd=lambda w: f"{lists_dir(w.dataset)}/gnd.json",
        baseline=lambda w: f"results/eval/{w.dataset}/{v_eval(w.dataset)}/global.json",
    output:
        json="results/eval/{dataset}/{ver}/sv.json",
        ranking="results/eval/{dataset}/{ver}/sv_ranking.h5",
        csv="results/eval/{dataset}/{ver}/sv_neighbours.csv",
        manifest="results/eval/{dataset}/{ver}/sv.manifest.json",
    log:
        "logs/evaluate_sv/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/evaluate_sv/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        sv=lambda w: (check_version(w, v_sv(w.dataset)), config["sv"])[1],
        n_bootstrap=config["ames"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {**versions(w.dataset), "evaluate": v_sv(w.dataset), "global_evaluate": v_eval(w.dataset)},
        hyperparameters=lambda w: {"global": global_hyperparameters(w.dataset), "sv": config["sv"]},
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_sv.py"

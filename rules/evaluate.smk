# Revisitop evaluation of the global shortlist, and the top-level results/{dataset}_{method}.json.


rule evaluate_global:
    input:
        knn=lambda w: PLAN.knn_path(w.dataset),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
    output:
        json=fill(EVAL, method="global"),
        ranking=beside(EVAL, "global_ranking.h5"),
        csv=beside(EVAL, "global_neighbours.csv"),
        manifest=beside(EVAL, "global.manifest.json"),
    log:
        "logs/evaluate_global/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/evaluate_global/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=ranking_mem_mb(2000),
        runtime=30,
    params:
        ks=lambda w: (check_version(w, PLAN.v_eval(w.dataset)), config["evaluate"]["ks"])[1],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: PLAN.versions(w.dataset),
        hyperparameters=lambda w: PLAN.global_hyperparameters(w.dataset),
        provenance=lambda w: {"data": PLAN.dataset_dir(w.dataset)},
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_global.py"


rule publish:
    input:
        unpack(publish_inputs),
    output:
        "results/{result}.json",
    log:
        "logs/publish/{result}.log",
    wildcard_constraints:
        # {dataset}_{method}, split by retrieval/names.py (datasets may hold '_'); {dataset}_compare is compare's. A
        # name without '_' matches too, so that results/demo.json is told how a result is named (not "No rule")
        result=r"(?![^/]*_compare\.json$)[^/]+",
    localrule: True
    conda:
        ENV
    params:
        fitted_on=publish_fitted_on,
    script:
        "../workflow_scripts/publish.py"

# Revisitop evaluation of the global shortlist, and the top-level results/{dataset}_{method}.json.


def check_evaluable(ds):
    if canonical(ds) == canonical(TRAIN):
        raise WorkflowError(
            f"dataset '{ds}' is the training split (training_split: {TRAIN}); the codebook and whitening were fitted "
            "on it, so its metrics would be inflated. Evaluate another dataset or change training_split."
        )


def global_hyperparameters():
    return {
        "training_split": TRAIN,
        "crop_queries": config["crop_queries"],
        "extract": extract_config(),
        "codebook": config["codebook"],
        "aggregate": config["aggregate"],
        "whiten": config["whiten"],
        "knn": config["knn"],
        "evaluate": config["evaluate"],
    }


rule evaluate_global:
    input:
        knn=lambda w: f"results/knn/{w.dataset}/{v_knn(w.dataset)}/knn.h5",
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
        gnd=lambda w: f"{lists_dir(w.dataset)}/gnd.json",
    output:
        json="results/eval/{dataset}/{ver}/global.json",
        ranking="results/eval/{dataset}/{ver}/global_ranking.h5",
        csv="results/eval/{dataset}/{ver}/global_neighbours.csv",
    params:
        ks=lambda w: (check_version(w, v_eval(w.dataset)), config["evaluate"]["ks"])[1],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: versions(w.dataset),
        hyperparameters=global_hyperparameters(),
        provenance=lambda w: {"data": os.path.abspath(dataset_dir(w.dataset))},
        preset=PRESET,
    log:
        "logs/evaluate_global/{dataset}/{ver}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    script:
        "../workflow_scripts/evaluate_global.py"


def evaluation_json(wildcards):
    if wildcards.method not in METHODS:
        raise WorkflowError(f"unknown method '{wildcards.method}' in {wildcards.dataset}_{wildcards.method}; available: {', '.join(METHODS)}")
    check_evaluable(wildcards.dataset)
    return f"results/eval/{wildcards.dataset}/{v_eval(wildcards.dataset)}/{wildcards.method}.json"


rule publish:
    input:
        evaluation_json,
    output:
        "results/{dataset}_{method}.json",
    log:
        "logs/publish/{dataset}_{method}.log",
    localrule: True
    conda:
        ENV
    script:
        "../workflow_scripts/publish.py"

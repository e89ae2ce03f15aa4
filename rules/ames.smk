# AMES re-ranking: training kNN, ITQ, training, distillation, logits once per (model, dataset), grid evaluation.


rule knn_train:
    input:
        db=lambda w: global_path(TRAIN, "db"),
    output:
        knn="results/knn_train/{ver}/knn.h5",
        manifest="results/knn_train/{ver}/manifest.json",
    log:
        "logs/knn_train/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        preset=PRESET,
        k=lambda w: (check_version(w, v_knn_train()), config["ames"]["train"]["num_candidates"])[1],
    script:
        "../workflow_scripts/knn_train.py"


rule itq:
    input:
        local=lambda w: local_store(TRAIN, "db"),
    output:
        itq="results/itq/{ver}/itq.npz",
        manifest="results/itq/{ver}/manifest.json",
    log:
        "logs/itq/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, v_itq()), config["ames"]["itq"])[1],
        training_split=TRAIN,
        preset=PRESET,
    script:
        "../workflow_scripts/itq.py"


rule train_ames:
    input:
        unpack(train_validation_inputs),
        local=lambda w: local_store(TRAIN, "db"),
        lists=lambda w: f"{lists_dir(TRAIN)}/lists.json",
        knn=lambda w: f"results/knn_train/{v_knn_train()}/knn.h5",
    output:
        model="results/ames_model/{ver}/model.pt",
        curves="results/ames_model/{ver}/curves.json",
        manifest="results/ames_model/{ver}/manifest.json",
    log:
        "logs/train_ames/{ver}.log",
    benchmark:
        "benchmarks/train_ames/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=8000,
        runtime=240,
    params:
        model=lambda w: (check_version(w, v_ames_model()), config["ames"]["model"])[1],
        train=config["ames"]["train"],
        validation=lambda w: train_validation(),
        device=config["ames"]["device"],
        training_split=TRAIN,
        preset=PRESET,
    script:
        "../workflow_scripts/train_ames.py"


rule train_ames_binary:
    input:
        local=lambda w: local_store(TRAIN, "db"),
        lists=lambda w: f"{lists_dir(TRAIN)}/lists.json",
        knn=lambda w: f"results/knn_train/{v_knn_train()}/knn.h5",
        teacher=lambda w: ames_model_path("ames"),
        itq=lambda w: f"results/itq/{v_itq()}/itq.npz",
    output:
        model="results/ames_binary_model/{ver}/model.pt",
        curves="results/ames_binary_model/{ver}/curves.json",
        manifest="results/ames_binary_model/{ver}/manifest.json",
    log:
        "logs/train_ames_binary/{ver}.log",
    benchmark:
        "benchmarks/train_ames_binary/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=8000,
        runtime=240,
    params:
        model=lambda w: (check_version(w, v_ames_binary_model()), config["ames"]["model"])[1],
        train=distill_train_config(),
        device=config["ames"]["device"],
        training_split=TRAIN,
        preset=PRESET,
    script:
        "../workflow_scripts/train_ames.py"


# The database side prepared once per (model, dataset): packed sign bits (binary) or float16 tokens (full precision).
rule ames_store:
    input:
        model=lambda w: ames_model_path(w.method),
        db=lambda w: local_store(w.dataset, "db"),
    output:
        store="results/ames_store/{dataset}/{ver}/{method}.h5",
        manifest="results/ames_store/{dataset}/{ver}/{method}.manifest.json",
    log:
        "logs/ames_store/{dataset}/{ver}/{method}.log",
    benchmark:
        "benchmarks/ames_store/{dataset}/{ver}/{method}.tsv"
    wildcard_constraints:
        method="ames|ames_binary",
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=4000,
        runtime=120,
    params:
        db_desc=lambda w: (check_version(w, v_ames_store(w.dataset, w.method)), config["ames"]["db_desc"])[1],
        device=config["ames"]["device"],
        preset=PRESET,
    script:
        "../workflow_scripts/ames_store.py"


rule ames_logits:
    input:
        model=lambda w: ames_model_path(w.method),
        query=lambda w: local_store(w.dataset, "query"),
        db=lambda w: ames_store_path(w.dataset, w.method),
        knn=lambda w: f"results/knn/{w.dataset}/{v_knn(w.dataset)}/knn.h5",
        gnd=lambda w: f"{lists_dir(w.dataset)}/gnd.json",
    output:
        logits="results/ames_logits/{dataset}/{ver}/{method}.h5",
        manifest="results/ames_logits/{dataset}/{ver}/{method}.manifest.json",
    log:
        "logs/ames_logits/{dataset}/{ver}/{method}.log",
    benchmark:
        "benchmarks/ames_logits/{dataset}/{ver}/{method}.tsv"
    wildcard_constraints:
        method="ames|ames_binary",
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=8000,
        runtime=240,
    params:
        preset=PRESET,
        q_desc=lambda w: (check_version(w, v_logits(w.dataset, w.method)), config["ames"]["q_desc"])[1],
        db_desc=config["ames"]["db_desc"],
        max_rerank=ames_max_rerank(),
        junk_mode=config["ames"]["junk_mode"],
        batch=config["ames"]["batch_pairs"],
        device=config["ames"]["device"],
    script:
        "../workflow_scripts/ames_logits.py"


rule evaluate_ames:
    input:
        unpack(evaluate_ames_inputs),
    output:
        json="results/eval/{dataset}/{ver}/{method}.json",
        ranking="results/eval/{dataset}/{ver}/{method}_ranking.h5",
        csv="results/eval/{dataset}/{ver}/{method}_neighbours.csv",
        grid="results/eval/{dataset}/{ver}/{method}_grid.csv",
        manifest="results/eval/{dataset}/{ver}/{method}.manifest.json",
    log:
        "logs/evaluate_ames/{dataset}/{ver}/{method}.log",
    wildcard_constraints:
        method="ames|ames_binary",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        grid=lambda w: (
            check_version(w, v_eval_ames(w.dataset, w.method)),
            {k: config["ames"][k] for k in ("num_rerank", "lambda", "gamma")},
        )[1],
        select=config["ames"]["select"],
        fusion=config["ames"]["fusion"],
        fixed=config["ames"]["fixed"],
        validation_split=config["ames"]["validation_split"],
        junk_mode=config["ames"]["junk_mode"],
        n_bootstrap=config["ames"]["bootstrap"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: ames_versions(w.dataset, w.method),
        hyperparameters=lambda w: ames_hyperparameters(w.dataset, w.method),
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_ames.py"

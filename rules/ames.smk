# AMES re-ranking: training kNN, ITQ, training, distillation, logits once per (model, dataset), grid evaluation.


rule knn_train:
    input:
        db=lambda w: PLAN.global_path(TRAIN, "db"),
    output:
        knn=KNN_TRAIN,
        manifest=beside(KNN_TRAIN, "manifest.json"),
    log:
        "logs/knn_train/{ver}.log",
    benchmark:
        "benchmarks/knn_train/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        preset=PRESET,
        k=lambda w: (check_version(w, PLAN.v_knn_train()), config["ames"]["train"]["num_candidates"])[1],
    script:
        "../workflow_scripts/knn_train.py"


rule itq:
    input:
        local=lambda w: PLAN.local_store(TRAIN, "db"),
    output:
        itq=ITQ,
        manifest=beside(ITQ, "manifest.json"),
    log:
        "logs/itq/{ver}.log",
    benchmark:
        "benchmarks/itq/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, PLAN.v_itq()), config["ames"]["itq"])[1],
        training_split=TRAIN,
        preset=PRESET,
    script:
        "../workflow_scripts/itq.py"


rule train_ames:
    input:
        unpack(train_validation_inputs),
        local=lambda w: PLAN.local_store(TRAIN, "db"),
        lists=lambda w: PLAN.lists_json(TRAIN),
        knn=lambda w: PLAN.knn_train_path(),
    output:
        model=AMES_MODEL,
        curves=beside(AMES_MODEL, "curves.json"),
        manifest=beside(AMES_MODEL, "manifest.json"),
    log:
        "logs/train_ames/{ver}.log",
    benchmark:
        BENCH_TRAIN_AMES
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=8000,
        runtime=240,
    params:
        model=lambda w: (check_version(w, PLAN.v_ames_model()), config["ames"]["model"])[1],
        train=config["ames"]["train"],
        validation=lambda w: PLAN.train_validation(),
        precision=config["ames"]["precision"],
        training_split=TRAIN,
        preset=PRESET,
    script:
        "../workflow_scripts/train_ames.py"


rule train_ames_binary:
    input:
        local=lambda w: PLAN.local_store(TRAIN, "db"),
        lists=lambda w: PLAN.lists_json(TRAIN),
        knn=lambda w: PLAN.knn_train_path(),
        teacher=lambda w: PLAN.ames_model_path("ames"),
        itq=lambda w: PLAN.itq_path(),
    output:
        model=AMES_BINARY_MODEL,
        curves=beside(AMES_BINARY_MODEL, "curves.json"),
        manifest=beside(AMES_BINARY_MODEL, "manifest.json"),
    log:
        "logs/train_ames_binary/{ver}.log",
    benchmark:
        BENCH_TRAIN_AMES_BINARY
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=8000,
        runtime=240,
    params:
        model=lambda w: (check_version(w, PLAN.v_ames_binary_model()), config["ames"]["model"])[1],
        train=PLAN.distill_train_config(),
        precision=config["ames"]["precision"],
        training_split=TRAIN,
        preset=PRESET,
    script:
        "../workflow_scripts/train_ames.py"


# The database side prepared once per (model, dataset): packed sign bits (binary) or float16 tokens (full precision).
rule ames_store:
    input:
        model=lambda w: PLAN.ames_model_path(w.method),
        db=lambda w: PLAN.local_store(w.dataset, "db"),
    output:
        store=AMES_STORE,
        manifest=beside(AMES_STORE, "{method}.manifest.json"),
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
        db_desc=lambda w: (check_version(w, PLAN.v_ames_store(w.dataset, w.method)), config["ames"]["db_desc"])[1],
        preset=PRESET,
    script:
        "../workflow_scripts/ames_store.py"


rule ames_logits:
    input:
        model=lambda w: PLAN.ames_model_path(w.method),
        query=lambda w: PLAN.local_store(w.dataset, "query"),
        db=lambda w: PLAN.ames_store_path(w.dataset, w.method),
        knn=lambda w: PLAN.knn_path(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
    output:
        logits=AMES_LOGITS,
        manifest=beside(AMES_LOGITS, "{method}.manifest.json"),
    log:
        "logs/ames_logits/{dataset}/{ver}/{method}.log",
    benchmark:
        BENCH_LOGITS
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
        q_desc=lambda w: (check_version(w, PLAN.v_logits(w.dataset, w.method)), config["ames"]["q_desc"])[1],
        db_desc=config["ames"]["db_desc"],
        max_rerank=PLAN.ames_max_rerank(),
        junk_mode=config["ames"]["junk_mode"],
        precision=config["ames"]["precision"],
    script:
        "../workflow_scripts/ames_logits.py"


rule evaluate_ames:
    input:
        unpack(evaluate_ames_inputs),
    output:
        json=EVAL,
        ranking=beside(EVAL, "{method}_ranking.h5"),
        csv=beside(EVAL, "{method}_neighbours.csv"),
        grid=beside(EVAL, "{method}_grid.csv"),
        manifest=beside(EVAL, "{method}.manifest.json"),
    log:
        "logs/evaluate_ames/{dataset}/{ver}/{method}.log",
    benchmark:
        "benchmarks/evaluate_ames/{dataset}/{ver}/{method}.tsv"
    wildcard_constraints:
        method="ames|ames_binary",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=ranking_mem_mb(4000),
        runtime=30,
    params:
        grid=lambda w: (
            check_version(w, PLAN.v_eval_ames(w.dataset, w.method)),
            {k: config["ames"][k] for k in ("num_rerank", "lambda", "gamma")},
        )[1],
        select=config["ames"]["select"],
        fusion=config["ames"]["fusion"],
        geometry=lambda w: PLAN.ames_geometry(),
        fixed=config["ames"]["fixed"],
        validation_split=config["ames"]["validation_split"],
        junk_mode=config["ames"]["junk_mode"],
        n_bootstrap=config["evaluate"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: PLAN.ames_versions(w.dataset, w.method),
        hyperparameters=lambda w: PLAN.ames_hyperparameters(w.dataset, w.method),
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_ames.py"

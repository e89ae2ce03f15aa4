# SSP: product-quantizer anchors of the gallery space, a light query model trained against them, asymmetric search.


rule anchors:
    input:
        descriptors=lambda w: PLAN.global_path(PLAN.ssp_split(), "db", w.space),
    output:
        anchors=ANCHORS,
        manifest=beside(ANCHORS, "manifest.json"),
    log:
        "logs/anchors/{space}/{ver}.log",
    benchmark:
        "benchmarks/anchors/{space}/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, PLAN.v_anchors(w.space)), PLAN.anchors_config())[1],
        fitted_on=lambda w: PLAN.ssp_split(),
        preset=PRESET,
    script:
        "../workflow_scripts/anchors.py"


rule train_query:
    input:
        light=lambda w: PLAN.local_store(PLAN.ssp_split(), "db", PLAN.v_ssp_local(PLAN.ssp_split())),
        codebook=lambda w: PLAN.codebook_path(w.space),
        whiten=lambda w: PLAN.whiten_path(w.space),
        gallery=lambda w: PLAN.global_path(PLAN.ssp_split(), "db", w.space),
        anchors=lambda w: PLAN.anchors_path(w.space),
        # ssp.train.select: validation (the default): the validation split's light queries, database and ground truth
        validation=lambda w: [
            v[k]
            for v in [PLAN.ssp_validation(w.space)]  # planned once (it reads the split's ground truth)
            if v
            for k in ("light_query", "db", "gnd")
        ],
    output:
        model=QUERY_MODEL,
        curves=beside(QUERY_MODEL, "curves.json"),
        manifest=beside(QUERY_MODEL, "manifest.json"),
    log:
        "logs/train_query/{space}/{ver}.log",
    benchmark:
        "benchmarks/train_query/{space}/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=4000,
        runtime=60,
    params:
        config=lambda w: (check_version(w, PLAN.v_query_model(w.space)), config["ssp"]["train"])[1],
        alpha=config["aggregate"]["alpha"],
        power=config["whiten"]["power"],
        fitted_on=lambda w: PLAN.ssp_split(),
        preset=PRESET,
    script:
        "../workflow_scripts/train_query.py"


rule evaluate_ssp:
    input:
        light_query=lambda w: PLAN.local_store(w.dataset, "query", PLAN.v_ssp_local(w.dataset)),
        codebook=lambda w: PLAN.codebook_path(PLAN.fit_split(w.dataset)),
        whiten=lambda w: PLAN.whiten_path(PLAN.fit_split(w.dataset)),
        adapter=lambda w: PLAN.query_model_path(PLAN.fit_split(w.dataset)),
        query=lambda w: PLAN.global_path(w.dataset, "query"),
        db=lambda w: PLAN.global_path(w.dataset, "db"),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
    output:
        json=fill(EVAL, method="ssp"),
        ranking=beside(EVAL, "ssp_ranking.h5"),
        csv=beside(EVAL, "ssp_neighbours.csv"),
        manifest=beside(EVAL, "ssp.manifest.json"),
    log:
        "logs/evaluate_ssp/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/evaluate_ssp/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=ranking_mem_mb(4000, rankings=3),  # three query sets
        runtime=30,
    params:
        check=lambda w: check_version(w, PLAN.v_ssp(w.dataset)),
        alpha=config["aggregate"]["alpha"],
        power=config["whiten"]["power"],
        light_sift=config["ssp"]["query_sift"],
        gallery_sift=config["extract"]["sift"],
        cost_images=config["ssp"]["cost_images"],
        n_bootstrap=config["evaluate"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **PLAN.versions(w.dataset),
            "demo_data": PLAN.demo_version(w.dataset, PLAN.fit_split(w.dataset), PLAN.ssp_split()),
            "ssp_local": PLAN.v_ssp_local(w.dataset),
            "anchors": PLAN.v_anchors(PLAN.fit_split(w.dataset)),
            "query_model": PLAN.v_query_model(PLAN.fit_split(w.dataset)),
            "evaluate": PLAN.v_ssp(w.dataset),
        },
        hyperparameters=lambda w: {
            "global": PLAN.global_hyperparameters(w.dataset),
            # anchors.split as its version reads it (the training split written out is null)
            "ssp": {**config["ssp"], "anchors": PLAN.anchors_config()},
            "training_split": PLAN.canonical(PLAN.ssp_split()),  # its anchors' and query model's images
        },
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_ssp.py"

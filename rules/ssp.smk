# SSP: product-quantizer anchors of the gallery space, a light query model trained against them, asymmetric search.


rule anchors:
    input:
        descriptors=lambda w: global_path(ssp_split(), "db", w.space),
    output:
        anchors="results/anchors/{space}/{ver}/anchors.npy",
        manifest="results/anchors/{space}/{ver}/manifest.json",
    log:
        "logs/anchors/{space}/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, v_anchors(w.space)), config["ssp"]["anchors"])[1],
        fitted_on=lambda w: ssp_split(),
        preset=PRESET,
    script:
        "../workflow_scripts/anchors.py"


rule train_query:
    input:
        light=lambda w: f"results/local/{ssp_split()}/{v_ssp_local(ssp_split())}/db/local.h5",
        codebook=lambda w: codebook_path(w.space),
        whiten=lambda w: whiten_path(w.space),
        gallery=lambda w: global_path(ssp_split(), "db", w.space),
        anchors=lambda w: f"results/anchors/{w.space}/{v_anchors(w.space)}/anchors.npy",
    output:
        model="results/query_model/{space}/{ver}/adapter.pt",
        curves="results/query_model/{space}/{ver}/curves.json",
        manifest="results/query_model/{space}/{ver}/manifest.json",
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
        config=lambda w: (check_version(w, v_query_model(w.space)), config["ssp"]["train"])[1],
        alpha=config["aggregate"]["alpha"],
        power=config["whiten"]["power"],
        fitted_on=lambda w: ssp_split(),
        preset=PRESET,
    script:
        "../workflow_scripts/train_query.py"


rule evaluate_ssp:
    input:
        light_query=lambda w: f"results/local/{w.dataset}/{v_ssp_local(w.dataset)}/query/local.h5",
        codebook=lambda w: codebook_path(fit_split(w.dataset)),
        whiten=lambda w: whiten_path(fit_split(w.dataset)),
        adapter=lambda w: f"results/query_model/{fit_split(w.dataset)}/{v_query_model(fit_split(w.dataset))}/adapter.pt",
        query=lambda w: global_path(w.dataset, "query"),
        db=lambda w: global_path(w.dataset, "db"),
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
        gnd=lambda w: f"{lists_dir(w.dataset)}/gnd.json",
    output:
        json="results/eval/{dataset}/{ver}/ssp.json",
        ranking="results/eval/{dataset}/{ver}/ssp_ranking.h5",
        csv="results/eval/{dataset}/{ver}/ssp_neighbours.csv",
        manifest="results/eval/{dataset}/{ver}/ssp.manifest.json",
    log:
        "logs/evaluate_ssp/{dataset}/{ver}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        check=lambda w: check_version(w, v_ssp(w.dataset)),
        alpha=config["aggregate"]["alpha"],
        power=config["whiten"]["power"],
        light_sift=config["ssp"]["query_sift"],
        gallery_sift=config["extract"]["sift"],
        cost_images=config["ssp"]["cost_images"],
        n_bootstrap=config["ames"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **versions(w.dataset),
            "ssp_local": v_ssp_local(w.dataset),
            "anchors": v_anchors(fit_split(w.dataset)),
            "query_model": v_query_model(fit_split(w.dataset)),
            "evaluate": v_ssp(w.dataset),
        },
        hyperparameters=lambda w: {"global": global_hyperparameters(w.dataset), "ssp": config["ssp"]},
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_ssp.py"

# Supervised (Lw) whitening, method lw (formerly 'whiten', still accepted): learned from the training split's
# same-label pairs of global descriptors, applied to the global descriptors and searched again.
rule lw_fit:
    input:
        descriptors=lambda w: PLAN.global_path(TRAIN, "db"),
        lists=lambda w: PLAN.lists_json(TRAIN),
    output:
        lw=LW,
        manifest=beside(LW, "manifest.json"),
    log:
        "logs/lw_fit/{ver}.log",
    benchmark:
        "benchmarks/lw_fit/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        # measured 4.9 GB peak (VmHWM) on the demo's 8192-d VLAD with 2,400 pairs: covariances of dim^2 float64
        mem_mb=8000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, PLAN.v_lw()), config["lw"])[1],
        training_split=TRAIN,
        global_version=lambda w: PLAN.v_global(TRAIN),
        preset=PRESET,
    script:
        "../workflow_scripts/lw_fit.py"


rule evaluate_lw:
    input:
        query=lambda w: PLAN.global_path(w.dataset, "query", PLAN.lw_space()),
        db=lambda w: PLAN.global_path(w.dataset, "db", PLAN.lw_space()),
        lw=lambda w: PLAN.lw_path(),
        knn=lambda w: PLAN.knn_path(w.dataset),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
        baseline=lambda w: PLAN.baseline_path(w.dataset),
    output:
        json=fill(EVAL, method="lw"),
        ranking=beside(EVAL, "lw_ranking.h5"),
        csv=beside(EVAL, "lw_neighbours.csv"),
        manifest=beside(EVAL, "lw.manifest.json"),
    log:
        "logs/evaluate_lw/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/evaluate_lw/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=ranking_mem_mb(4000),
        runtime=30,
    params:
        check=lambda w: check_version(w, PLAN.v_lw_eval(w.dataset)),
        n_bootstrap=config["evaluate"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: PLAN.lw_versions(w.dataset),
        hyperparameters=lambda w: PLAN.lw_hyperparameters(w.dataset),
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_lw.py"

# PCA-whitening: learned on the fit split's database VLADs (off when too few images: whiten.min_images_per_dim),
# applied to the splits of the datasets in its space.


rule whiten_fit:
    input:
        vlad=lambda w: PLAN.vlad_path(w.dataset, w.dataset, "db"),
    output:
        whiten=WHITEN,
        manifest=beside(WHITEN, "manifest.json"),
    log:
        "logs/whiten_fit/{dataset}/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, PLAN.v_whiten(w.dataset)), PLAN.whiten_identity())[1],
        training_split=lambda w: w.dataset,
        vlad_version=lambda w: PLAN.v_vlad(w.dataset, w.dataset),
        preset=PRESET,
    script:
        "../workflow_scripts/whiten_fit.py"


rule whiten_apply:
    input:
        vlad=lambda w: PLAN.vlad_path(w.dataset, w.space, w.split),
        whiten=lambda w: PLAN.whiten_path(w.space),
    output:
        descriptors=GLOBAL,
        manifest=beside(GLOBAL, "{split}.manifest.json"),
    log:
        "logs/whiten_apply/{dataset}/{space}/{ver}/{split}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        power=lambda w: (check_version(w, PLAN.v_global(w.dataset, w.space)), config["whiten"]["power"])[1],
        preset=PRESET,
    script:
        "../workflow_scripts/whiten_apply.py"


# Supervised (Lw) whitening: learned from the training split's same-label pairs of global descriptors (method whiten).
rule lw_fit:
    input:
        descriptors=lambda w: PLAN.global_path(TRAIN, "db"),
        lists=lambda w: PLAN.lists_json(TRAIN),
    output:
        lw=LW,
        manifest=beside(LW, "manifest.json"),
    log:
        "logs/lw_fit/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, PLAN.v_lw()), config["lw"])[1],
        training_split=TRAIN,
        global_version=lambda w: PLAN.v_global(TRAIN),
        preset=PRESET,
    script:
        "../workflow_scripts/lw_fit.py"


rule evaluate_whiten:
    input:
        query=lambda w: PLAN.global_path(w.dataset, "query", PLAN.lw_space()),
        db=lambda w: PLAN.global_path(w.dataset, "db", PLAN.lw_space()),
        lw=lambda w: PLAN.lw_path(),
        knn=lambda w: PLAN.knn_path(w.dataset),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
        baseline=lambda w: PLAN.baseline_path(w.dataset),
    output:
        json=fill(EVAL, method="whiten"),
        ranking=beside(EVAL, "whiten_ranking.h5"),
        csv=beside(EVAL, "whiten_neighbours.csv"),
        manifest=beside(EVAL, "whiten.manifest.json"),
    log:
        "logs/evaluate_whiten/{dataset}/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        check=lambda w: check_version(w, PLAN.v_lw_eval(w.dataset)),
        n_bootstrap=config["ames"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **PLAN.versions(w.dataset),
            "lw": PLAN.v_lw(),
            "evaluate": PLAN.v_lw_eval(w.dataset),
            "global_evaluate": PLAN.v_eval(w.dataset),
        },
        hyperparameters=lambda w: {"global": PLAN.global_hyperparameters(w.dataset), "lw": config["lw"]},
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_whiten.py"

# PCA-whitening: learned on the fit split's database VLADs (off when too few images: whiten.min_images_per_dim),
# applied to the splits of the datasets in its space.


rule whiten_fit:
    input:
        vlad=lambda w: f"results/vlad/{w.dataset}/{w.dataset}/{v_vlad(w.dataset, w.dataset)}/db.h5",
    output:
        whiten="results/whiten/{dataset}/{ver}/whiten.npz",
        manifest="results/whiten/{dataset}/{ver}/manifest.json",
    log:
        "logs/whiten_fit/{dataset}/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, v_whiten(w.dataset)), whiten_identity())[1],
        training_split=lambda w: w.dataset,
        vlad_version=lambda w: v_vlad(w.dataset, w.dataset),
        preset=PRESET,
    script:
        "../workflow_scripts/whiten_fit.py"


rule whiten_apply:
    input:
        vlad=lambda w: f"results/vlad/{w.dataset}/{w.space}/{v_vlad(w.dataset, w.space)}/{w.split}.h5",
        whiten=lambda w: whiten_path(w.space),
    output:
        descriptors="results/global/{dataset}/{space}/{ver}/{split}.h5",
        manifest="results/global/{dataset}/{space}/{ver}/{split}.manifest.json",
    log:
        "logs/whiten_apply/{dataset}/{space}/{ver}/{split}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        power=lambda w: (check_version(w, v_global(w.dataset, w.space)), config["whiten"]["power"])[1],
        preset=PRESET,
    script:
        "../workflow_scripts/whiten_apply.py"


# Supervised (Lw) whitening: learned from the training split's same-label pairs of global descriptors (method whiten).
rule lw_fit:
    input:
        descriptors=lambda w: global_path(TRAIN, "db"),
        lists=lambda w: f"{lists_dir(TRAIN)}/lists.json",
    output:
        lw="results/lw/{ver}/lw.npz",
        manifest="results/lw/{ver}/manifest.json",
    log:
        "logs/lw_fit/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=lambda w: (check_version(w, v_lw()), config["lw"])[1],
        training_split=TRAIN,
        global_version=lambda w: v_global(TRAIN),
        preset=PRESET,
    script:
        "../workflow_scripts/lw_fit.py"


rule evaluate_whiten:
    input:
        query=lambda w: global_path(w.dataset, "query", lw_space()),
        db=lambda w: global_path(w.dataset, "db", lw_space()),
        lw=lambda w: f"results/lw/{v_lw()}/lw.npz",
        knn=lambda w: f"results/knn/{w.dataset}/{v_knn(w.dataset)}/knn.h5",
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
        gnd=lambda w: f"{lists_dir(w.dataset)}/gnd.json",
        baseline=lambda w: f"results/eval/{w.dataset}/{v_eval(w.dataset)}/global.json",
    output:
        json="results/eval/{dataset}/{ver}/whiten.json",
        ranking="results/eval/{dataset}/{ver}/whiten_ranking.h5",
        csv="results/eval/{dataset}/{ver}/whiten_neighbours.csv",
        manifest="results/eval/{dataset}/{ver}/whiten.manifest.json",
    log:
        "logs/evaluate_whiten/{dataset}/{ver}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        check=lambda w: check_version(w, v_lw_eval(w.dataset)),
        n_bootstrap=config["ames"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {
            **versions(w.dataset),
            "lw": v_lw(),
            "evaluate": v_lw_eval(w.dataset),
            "global_evaluate": v_eval(w.dataset),
        },
        hyperparameters=lambda w: {"global": global_hyperparameters(w.dataset), "lw": config["lw"]},
        preset=PRESET,
    script:
        "../workflow_scripts/evaluate_whiten.py"

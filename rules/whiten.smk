# PCA-whitening: learned on the training split's VLADs, applied to any split.


rule whiten_fit:
    input:
        vlad=lambda w: f"results/vlad/{TRAIN}/{v_vlad(TRAIN)}/db.h5",
    output:
        whiten="results/whiten/{ver}/whiten.npz",
        manifest="results/whiten/{ver}/manifest.json",
    params:
        config=lambda w: (check_version(w, v_whiten()), {"dim": config["whiten"]["dim"]})[1],
        training_split=TRAIN,
        vlad_version=lambda w: v_vlad(TRAIN),
        preset=PRESET,
    log:
        "logs/whiten_fit/{ver}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        "../workflow_scripts/whiten_fit.py"


rule whiten_apply:
    input:
        vlad=lambda w: f"results/vlad/{w.dataset}/{v_vlad(w.dataset)}/{w.split}.h5",
        whiten=lambda w: f"results/whiten/{v_whiten()}/whiten.npz",
    output:
        descriptors="results/global/{dataset}/{ver}/{split}.h5",
        manifest="results/global/{dataset}/{ver}/{split}.manifest.json",
    params:
        power=lambda w: (check_version(w, v_global(w.dataset)), config["whiten"]["power"])[1],
        preset=PRESET,
    log:
        "logs/whiten_apply/{dataset}/{ver}/{split}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
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
    params:
        config=lambda w: (check_version(w, v_lw()), config["lw"])[1],
        training_split=TRAIN,
        global_version=lambda w: v_global(TRAIN),
        preset=PRESET,
    log:
        "logs/lw_fit/{ver}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        "../workflow_scripts/lw_fit.py"


rule evaluate_whiten:
    input:
        query=lambda w: global_path(w.dataset, "query"),
        db=lambda w: global_path(w.dataset, "db"),
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
    params:
        check=lambda w: check_version(w, v_lw_eval(w.dataset)),
        n_bootstrap=config["ames"]["bootstrap"],
        ks=config["evaluate"]["ks"],
        csv_top=config["evaluate"]["csv_top"],
        versions=lambda w: {**versions(w.dataset), "lw": v_lw(), "evaluate": v_lw_eval(w.dataset),
                            "global_evaluate": v_eval(w.dataset)},
        hyperparameters=lambda w: {"global": global_hyperparameters(), "lw": config["lw"]},
        preset=PRESET,
    log:
        "logs/evaluate_whiten/{dataset}/{ver}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        "../workflow_scripts/evaluate_whiten.py"

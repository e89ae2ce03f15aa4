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

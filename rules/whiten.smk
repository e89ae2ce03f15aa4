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
    benchmark:
        "benchmarks/whiten_fit/{dataset}/{ver}.tsv"
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
        vlad=lambda w: PLAN.vlad_path(w.dataset, w.space, w.side),
        whiten=lambda w: PLAN.whiten_path(w.space),
    output:
        descriptors=GLOBAL,
        manifest=beside(GLOBAL, "{side}.manifest.json"),
    log:
        "logs/whiten_apply/{dataset}/{space}/{ver}/{side}.log",
    benchmark:
        "benchmarks/whiten_apply/{dataset}/{space}/{ver}/{side}.tsv"
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

# Visual codebook for VLAD: faiss k-means on local descriptors of the training split (never the evaluated set).


rule codebook:
    input:
        local=lambda w: local_store(TRAIN, "db"),
    output:
        codebook="results/codebook/{ver}/codebook.npz",
        manifest="results/codebook/{ver}/manifest.json",
    params:
        config=lambda w: (check_version(w, v_codebook()), config["codebook"])[1],
        training_split=TRAIN,
        local_version=lambda w: v_local(TRAIN),
        preset=PRESET,
    log:
        "logs/codebook/{ver}.log",
    benchmark:
        "benchmarks/codebook/{ver}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../workflow_scripts/codebook.py"

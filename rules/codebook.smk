# Visual codebook for VLAD: faiss k-means on the local descriptors of the database images of a fit split
# ({dataset}: the evaluated dataset itself with unsupervised_fit: self, no labels; see fit_split in common.smk).


rule codebook:
    input:
        local=lambda w: PLAN.local_store(w.dataset, "db"),
    output:
        codebook=CODEBOOK,
        manifest=beside(CODEBOOK, "manifest.json"),
    log:
        "logs/codebook/{dataset}/{ver}.log",
    benchmark:
        "benchmarks/codebook/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=lambda w: (check_version(w, PLAN.v_codebook(w.dataset)), config["codebook"])[1],
        training_split=lambda w: w.dataset,
        local_version=lambda w: PLAN.v_local(w.dataset),
        preset=PRESET,
    script:
        "../workflow_scripts/codebook.py"

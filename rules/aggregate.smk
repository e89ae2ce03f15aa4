# VLAD global descriptors of one split over the training split's codebook.


rule aggregate_vlad:
    input:
        local=lambda w: local_store(w.dataset, w.split),
        codebook=lambda w: f"results/codebook/{v_codebook()}/codebook.npz",
    output:
        vlad="results/vlad/{dataset}/{ver}/{split}.h5",
        manifest="results/vlad/{dataset}/{ver}/{split}.manifest.json",
    params:
        preset=PRESET,
        alpha=lambda w: (check_version(w, v_vlad(w.dataset)), config["aggregate"]["alpha"])[1],
    log:
        "logs/aggregate_vlad/{dataset}/{ver}/{split}.log",
    benchmark:
        "benchmarks/aggregate_vlad/{dataset}/{ver}/{split}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        ENV
    script:
        "../workflow_scripts/aggregate_vlad.py"

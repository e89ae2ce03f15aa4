# Local descriptors, scattered over a fixed number of chunks per split (the DAG stays static).


rule extract_local:
    input:
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
    output:
        "results/local/{dataset}/{ver}/{split}/chunk_{chunk}.h5",
    params:
        n_chunks=lambda w: (check_version(w, v_local(w.dataset)), config["extract"]["n_chunks"])[1],
        backbone=config["extract"]["backbone"],
        backbone_config=config["extract"][config["extract"]["backbone"]],
        on_bad_image=config["on_bad_image"],
    log:
        "logs/extract_local/{dataset}/{ver}/{split}_{chunk}.log",
    benchmark:
        "benchmarks/extract_local/{dataset}/{ver}/{split}_{chunk}.tsv"
    threads: 1
    resources:
        gpu=0 if config["extract"]["backbone"] == "sift" else 1,
        mem_mb=2000,
        runtime=120,
    conda:
        ENV
    script:
        "../workflow_scripts/extract_local.py"

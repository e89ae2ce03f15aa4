# Local descriptors (and, for deep backbones, global descriptors), scattered over a fixed number of chunks per split
# (the DAG stays static). The model rules (dinov2, resnet) ask for a GPU; sift asks for none.


rule extract_local:
    input:
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
    output:
        "results/local/{dataset}/{ver}/{split}/chunk_{chunk}.h5",
    params:
        n_chunks=config["extract"]["n_chunks"],
        backbone=backbone_of,
        backbone_config=lambda w: config["extract"][backbone_of(w)],
        on_bad_image=config["on_bad_image"],
    log:
        "logs/extract_local/{dataset}/{ver}/{split}_{chunk}.log",
    benchmark:
        "benchmarks/extract_local/{dataset}/{ver}/{split}_{chunk}.tsv"
    threads: 1
    resources:
        gpu=lambda w: 0 if backbone_of(w) == "sift" else 1,
        mem_mb=2000,
        runtime=120,
    conda:
        ENV
    script:
        "../workflow_scripts/extract_local.py"

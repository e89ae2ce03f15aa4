# VLAD global descriptors of one split over the fit split's codebook.


rule aggregate_vlad:
    input:
        local=lambda w: local_store(w.dataset, w.split),
        codebook=lambda w: codebook_path(w.space),
    output:
        vlad="results/vlad/{dataset}/{space}/{ver}/{split}.h5",
        manifest="results/vlad/{dataset}/{space}/{ver}/{split}.manifest.json",
    log:
        "logs/aggregate_vlad/{dataset}/{space}/{ver}/{split}.log",
    benchmark:
        "benchmarks/aggregate_vlad/{dataset}/{space}/{ver}/{split}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        preset=PRESET,
        alpha=lambda w: (check_version(w, v_vlad(w.dataset, w.space)), config["aggregate"]["alpha"])[1],
    script:
        "../workflow_scripts/aggregate_vlad.py"


# shortlist.source: backbone: the global descriptors the shortlist backbone computed during extraction.
rule backbone_global:
    input:
        local=lambda w: f"results/local/{w.dataset}/{v_local(w.dataset, shortlist_backbone())}/{w.split}/local.h5",
    output:
        descriptors="results/global_backbone/{dataset}/{ver}/{split}.h5",
        manifest="results/global_backbone/{dataset}/{ver}/{split}.manifest.json",
    log:
        "logs/backbone_global/{dataset}/{ver}/{split}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        check=lambda w: check_version(w, v_global(w.dataset)),
        backbone=lambda w: shortlist_backbone(),
        preset=PRESET,
    script:
        "../workflow_scripts/backbone_global.py"


# shortlist.source: import: global descriptors computed elsewhere (npy, HDF5, revisitop .mat), checked and normalised.
rule import_global:
    input:
        src=lambda w: import_file(w.dataset, w.split),
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
    output:
        descriptors="results/global_import/{dataset}/{ver}/{split}.h5",
        manifest="results/global_import/{dataset}/{ver}/{split}.manifest.json",
    log:
        "logs/import_global/{dataset}/{ver}/{split}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        check=lambda w: check_version(w, v_global(w.dataset)),
    script:
        "../workflow_scripts/import_global.py"

# VLAD global descriptors of one split over the fit split's codebook.


rule aggregate_vlad:
    input:
        local=lambda w: PLAN.local_store(w.dataset, w.side),
        codebook=lambda w: PLAN.codebook_path(w.space),
    output:
        vlad=VLAD,
        manifest=beside(VLAD, "{side}.manifest.json"),
    log:
        "logs/aggregate_vlad/{dataset}/{space}/{ver}/{side}.log",
    benchmark:
        "benchmarks/aggregate_vlad/{dataset}/{space}/{ver}/{side}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        preset=PRESET,
        alpha=lambda w: (check_version(w, PLAN.v_vlad(w.dataset, w.space)), config["aggregate"]["alpha"])[1],
    script:
        "../workflow_scripts/aggregate_vlad.py"


# shortlist.source: backbone: the global descriptors the shortlist backbone computed during extraction.
rule backbone_global:
    input:
        local=lambda w: PLAN.local_store(w.dataset, w.side, PLAN.v_local(w.dataset, PLAN.shortlist_backbone())),
    output:
        descriptors=GLOBAL_BACKBONE,
        manifest=beside(GLOBAL_BACKBONE, "{side}.manifest.json"),
    log:
        "logs/backbone_global/{dataset}/{ver}/{side}.log",
    benchmark:
        "benchmarks/backbone_global/{dataset}/{ver}/{side}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        check=lambda w: check_version(w, PLAN.v_global(w.dataset)),
        backbone=lambda w: PLAN.shortlist_backbone(),
        preset=PRESET,
    script:
        "../workflow_scripts/backbone_global.py"


# shortlist.source: import: global descriptors computed elsewhere (npy, HDF5, revisitop .mat), checked and normalised.
rule import_global:
    input:
        src=lambda w: PLAN.import_file(w.dataset, w.side),
        lists=lambda w: PLAN.side_lists_json(w.dataset, w.side),
    output:
        descriptors=GLOBAL_IMPORT,
        manifest=beside(GLOBAL_IMPORT, "{side}.manifest.json"),
    log:
        "logs/import_global/{dataset}/{ver}/{side}.log",
    benchmark:
        "benchmarks/import_global/{dataset}/{ver}/{side}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        check=lambda w: check_version(w, PLAN.v_global(w.dataset)),
    script:
        "../workflow_scripts/import_global.py"

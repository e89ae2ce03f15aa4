# Local descriptors (and, for deep backbones, global descriptors), scattered over a fixed number of chunks per split
# (the DAG stays static). The model rules (dinov2, resnet) ask for a GPU; sift asks for none. A query chunk whose
# queries may be uncropped database images reads the database chunks and copies those rows (extracted once).


rule extract_local:
    input:
        lists=lambda w: PLAN.side_lists_json(w.dataset, w.side),
        release=ames_release_input,
        db_chunks=shared_db_chunks,
    output:
        CHUNK,
    log:
        "logs/extract_local/{dataset}/{ver}/{side}_{chunk}.log",
    benchmark:
        BENCH_EXTRACT
    conda:
        ENV
    threads: 1
    resources:
        gpu=lambda w: gpu_resource(extraction_gpus(w)),
        gres=lambda w: gres_resource(extraction_gpus(w)),
        mem_mb=2000,
        runtime=120,
    params:
        n_chunks=config["extract"]["n_chunks"],
        backbone=lambda w: extraction_of(w)[0],
        backbone_config=lambda w: extraction_of(w)[1],
        on_bad_image=config["on_bad_image"],
        max_image_pixels=config["max_image_pixels"],
    script:
        "../workflow_scripts/extract_local.py"


# Folder datasets: the photos not yet in the feature cache (new, replaced, or never extracted with this configuration),
# planned at DAG-build time (retrieval/dag_lists.py PackPlans, via common.smk feature_plan) into extract.n_chunks
# packs of at least extract.min_chunk_images photos each, and more packs where one would exceed
# extract.max_chunk_images; a job's memory follows its pack's size (pack_mem_mb).
rule extract_pack:
    output:
        h5=f"{FEATURES}/{{xv}}/packs/{{pack}}.h5",
        index=f"{FEATURES}/{{xv}}/packs/{{pack}}.json",
    log:
        "logs/extract_pack/{xv}/{pack}.log",
    benchmark:
        "benchmarks/extract_pack/{xv}/{pack}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=lambda w: gpu_resource(pack_gpus(w)),
        gres=lambda w: gres_resource(pack_gpus(w)),
        mem_mb=pack_mem_mb,
        runtime=120,
    params:
        pack=pack_param,
    script:
        "../workflow_scripts/extract_pack.py"

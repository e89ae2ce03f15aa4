# Merge the chunks of one split into a verified HDF5 virtual dataset ('{dataset}+1m': the dataset's chunks and the
# distractors', stacked without copying). With the feature cache (folder datasets), the store maps the split's rows,
# in list order, to the packs that hold them.


rule merge_local:
    input:
        lists=lambda w: PLAN.side_lists_json(w.dataset, w.side),
        chunks=merge_chunks,
        indexes=merge_indexes,
        images=merge_images,
    output:
        store=LOCAL,
        manifest=beside(CHUNK, "manifest.json"),
    log:
        "logs/merge_local/{dataset}/{ver}/{side}.log",
    benchmark:
        "benchmarks/merge_local/{dataset}/{ver}/{side}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        config=lambda w: {
            "backbone": extraction_of(w)[0],
            "n_chunks": config["extract"]["n_chunks"],
            extraction_of(w)[0]: extraction_of(w)[1],
        },
        lists_version=lambda w: PLAN.v_lists(w.dataset),
        preset=PRESET,
        groups=merge_groups,
        cache=merge_cache_params,
    script:
        "../workflow_scripts/merge_local.py"

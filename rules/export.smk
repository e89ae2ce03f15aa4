# Export in the AMES release layout: snakemake --cores all results/export/ames/{dataset}
# (local descriptors of both splits, the shortlist as nn_{desc}.pkl, test_*.txt lists, gnd_{dataset}.pkl), a folder
# that AMES's own code reads as {data_root}/{dataset}/ and that extract.backbone ames_import / shortlist.source
# ames_nn read back.


rule export_ames:
    input:
        db=lambda w: PLAN.local_store(w.dataset, "db"),
        query=lambda w: PLAN.local_store(w.dataset, "query"),
        knn=lambda w: PLAN.knn_path(w.dataset),
        lists=lambda w: PLAN.lists_json(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
    output:
        directory("results/export/ames/{dataset}"),
    log:
        "logs/export_ames/{dataset}.log",
    benchmark:
        "benchmarks/export_ames/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        desc=PLAN.export_desc(),
        version=lambda w: stable_hash({"local": PLAN.v_local(w.dataset), "knn": PLAN.v_knn(w.dataset)}),
        input_versions=lambda w: {
            "db": PLAN.v_local(w.dataset),
            "query": PLAN.v_local(w.dataset),
            "knn": PLAN.v_knn(w.dataset),
            "lists": PLAN.v_lists(w.dataset),
            "gnd": PLAN.v_lists(w.dataset),
        },
        preset=PRESET,
    script:
        "../workflow_scripts/export_ames.py"

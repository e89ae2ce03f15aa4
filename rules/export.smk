# Export in the AMES release layout: snakemake --cores all results/export/ames/{dataset}
# (local descriptors of both splits, the shortlist as nn_{desc}.pkl, test_*.txt lists, gnd_{dataset}.pkl), a folder
# that AMES's own code reads as {data_root}/{dataset}/ and that extract.backbone ames_import / shortlist.source
# ames_nn read back.


rule export_ames:
    input:
        db=lambda w: local_store(w.dataset, "db"),
        query=lambda w: local_store(w.dataset, "query"),
        knn=lambda w: f"results/knn/{w.dataset}/{v_knn(w.dataset)}/knn.h5",
        lists=lambda w: f"{lists_dir(w.dataset)}/lists.json",
        gnd=lambda w: f"{lists_dir(w.dataset)}/gnd.json",
    output:
        directory("results/export/ames/{dataset}"),
    log:
        "logs/export_ames/{dataset}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        desc=export_desc(),
        version=lambda w: stable_hash({"local": v_local(w.dataset), "knn": v_knn(w.dataset)}),
    script:
        "../workflow_scripts/export_ames.py"

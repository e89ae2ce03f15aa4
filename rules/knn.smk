# Nearest neighbours of the queries among the database global descriptors: exact search streamed in blocks (the
# default; full rankings for the metrics), or compressed search (IVF-PQ) for a shortlist of a large database.
# shortlist.source: ames_nn imports the shortlist from an AMES nn_*.pkl instead (the same knn.h5); asmk ranks the
# database with ASMK over local descriptors (rules/asmk.smk).


if config["shortlist"]["source"] == "ames_nn":

    rule import_nn:
        input:
            nn=lambda w: PLAN.nn_import_file(w.dataset),
            lists=lambda w: PLAN.lists_json(w.dataset),
        output:
            knn=KNN,
            manifest=beside(KNN, "manifest.json"),
        log:
            "logs/import_nn/{dataset}/{ver}.log",
        benchmark:
            BENCH_KNN
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            check=lambda w: check_version(w, PLAN.v_knn(w.dataset)),
        script:
            "../workflow_scripts/import_nn.py"

elif config["shortlist"]["source"] != "asmk":  # asmk: rule asmk_shortlist (rules/asmk.smk) writes knn.h5

    rule knn:
        input:
            query=lambda w: PLAN.global_path(w.dataset, "query"),
            db=lambda w: PLAN.global_path(w.dataset, "db"),
        output:
            knn=KNN,
            manifest=beside(KNN, "manifest.json"),
        log:
            "logs/knn/{dataset}/{ver}.log",
        benchmark:
            BENCH_KNN
        conda:
            ENV
        threads: config["threads"]
        resources:
            mem_mb=knn_mem_mb(4000),
            runtime=30,
        params:
            preset=PRESET,
            k=lambda w: (check_version(w, PLAN.v_knn(w.dataset)), config["knn"]["k"])[1],
            # what changes the result (knn.block, how exact search streams, is read from the configuration: changing it
            # re-runs nothing; the IVF-PQ settings only with knn.search: ivfpq)
            search=config["knn"]["search"],
            ivfpq=config["knn"]["ivfpq"] if config["knn"]["search"] == "ivfpq" else None,
        script:
            "../workflow_scripts/knn.py"

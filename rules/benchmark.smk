# Benchmarks: workflow targets that write JSON; compare ratios within one file (machines here are shared).


rule benchmark_ames:
    input:
        # spatial verification timed on a dataset's shortlists (benchmark.ames.sv_dataset; "" leaves it out)
        unpack(benchmark_sv_inputs),
    output:
        "results/benchmarks/ames_throughput.json",
    log:
        "logs/benchmark_ames.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=8000,
        runtime=60,
    params:
        config=config["benchmark"]["ames"],
        sv=config["sv"],
    script:
        "../workflow_scripts/benchmark_ames.py"


rule descriptor_sweep:
    input:
        ames_model=lambda w: PLAN.ames_model_path("ames"),
        ames_binary_model=lambda w: PLAN.ames_model_path("ames_binary"),
        ames_result="results/{dataset}_ames.json",
        ames_binary_result="results/{dataset}_ames_binary.json",
        query=lambda w: PLAN.local_store(w.dataset, "query"),
        db=lambda w: PLAN.descriptor_sweep_store(w.dataset),
        knn=lambda w: PLAN.knn_path(w.dataset),
        gnd=lambda w: PLAN.gnd_json(w.dataset),
    output:
        json="results/benchmarks/{dataset}_descriptors.json",
        png="results/benchmarks/{dataset}_descriptors.png",
        md="results/benchmarks/{dataset}_descriptors.md",
    log:
        "logs/descriptor_sweep/{dataset}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=8000,
        runtime=120,
    params:
        sweep=config["benchmark"]["descriptors"],
        sv=config["sv"],
        q_desc=config["ames"]["q_desc"],
        batch=config["ames"]["batch_pairs"],
        device=config["ames"]["device"],
        precision=config["ames"]["precision"],
        versions=lambda w: {
            **PLAN.versions(w.dataset),
            **PLAN.local_versions(w.dataset),
            "ames_model": PLAN.v_ames_model(),
            "ames_binary_model": PLAN.v_ames_binary_model(),
        },
    script:
        "../workflow_scripts/descriptor_sweep.py"


# snakemake --cores all results/benchmarks/demo_scale.json: a simulated benchmark.scale.n_db-image database resampled
# from the dataset's real descriptors; exact streamed search, IVF-PQ recall, binary store size, re-rank time, peak RSS.
rule benchmark_scale:
    input:
        query=lambda w: PLAN.global_path(w.dataset, "query"),
        db=lambda w: PLAN.global_path(w.dataset, "db"),
        model=lambda w: PLAN.ames_model_path("ames_binary"),
        store=lambda w: PLAN.ames_store_path(w.dataset, "ames_binary"),
        query_local=lambda w: PLAN.local_store(w.dataset, "query"),
    output:
        "results/benchmarks/{dataset}_scale.json",
    log:
        "logs/benchmark_scale/{dataset}.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        config=lambda w: PLAN.scale_benchmark_config(),
        q_desc=config["ames"]["q_desc"],
        db_desc=config["ames"]["db_desc"],
        device=config["ames"]["device"],
        precision=config["ames"]["precision"],
    script:
        "../workflow_scripts/benchmark_scale.py"


# snakemake --cores all results/benchmarks/extract_throughput.json: deep extraction images/s on the demo's photos
# (benchmark.extract: backbone and its configuration; random weights unless a checkpoint is given).
rule benchmark_extract:
    input:
        lists=lambda w: PLAN.lists_json("demo"),
    output:
        "results/benchmarks/extract_throughput.json",
    log:
        "logs/benchmark_extract.log",
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=gpu_resource(1),
        gres=gres_resource(1),
        mem_mb=8000,
        runtime=60,
    params:
        config=config["benchmark"]["extract"],
    script:
        "../workflow_scripts/benchmark_extract.py"

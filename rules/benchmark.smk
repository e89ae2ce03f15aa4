# Benchmarks: workflow targets that write JSON; compare ratios within one file (machines here are shared).


rule benchmark_ames:
    output:
        "results/benchmarks/ames_throughput.json",
    params:
        config=config["benchmark"]["ames"],
    log:
        "logs/benchmark_ames.log",
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    conda:
        ENV
    script:
        "../workflow_scripts/benchmark_ames.py"

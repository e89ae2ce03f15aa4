# The HTML report of a dataset: results/report/{dataset}.html (every method in report.methods).


rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report/{dataset}.html",
    log:
        "logs/report/{dataset}.log",
    benchmark:
        "benchmarks/report/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        methods=config["report"]["methods"],
        n_queries=config["report"]["n_queries"],
        top=config["report"]["top"],
        # timings only, read where present: as inputs a missing one would re-run its job (extraction, AMES training)
        benchmarks=report_benchmarks,
    script:
        "../workflow_scripts/report.py"

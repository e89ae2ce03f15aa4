# The HTML report of a dataset: results/report/{dataset}.html (every method in report.methods).


rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report/{dataset}.html",
    params:
        methods=config["report"]["methods"],
        n_queries=config["report"]["n_queries"],
        top=config["report"]["top"],
    log:
        "logs/report/{dataset}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../workflow_scripts/report.py"

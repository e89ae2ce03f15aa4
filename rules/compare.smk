# Every method on the same global shortlist, in one table: results/{dataset}_compare.md and .json.


rule compare:
    input:
        unpack(compare_inputs),
    output:
        json="results/{dataset}_compare.json",
        md="results/{dataset}_compare.md",
    log:
        "logs/compare/{dataset}.log",
    benchmark:
        "benchmarks/compare/{dataset}.tsv"
    localrule: True
    conda:
        ENV
    params:
        methods=config["compare"]["methods"],
    script:
        "../workflow_scripts/compare.py"

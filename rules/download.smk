# ROxford5k / RParis6k from the official locations, when they are not already under data_root.


rule download_revisitop:
    output:
        flag=os.path.join(config["data_root"], "{dataset}", ".download_complete"),
    wildcard_constraints:
        dataset="|".join(DOWNLOADABLE),
    params:
        data_root=lambda w, output: os.path.dirname(os.path.dirname(output.flag)),
    log:
        "logs/download/{dataset}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=240,
    conda:
        ENV
    script:
        "../workflow_scripts/download.py"

# ROxford5k / RParis6k / the R1M distractors (revisitop1m) from the official locations, when they are not already under
# data_root. Resumable: run again after an interruption.


rule download_revisitop:
    output:
        flag=os.path.join(config["data_root"], "{dataset}", ".download_complete"),
    log:
        "logs/download/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(DOWNLOADABLE),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda w: 2880 if w.dataset == "revisitop1m" else 240,
    params:
        data_root=lambda w, output: os.path.dirname(os.path.dirname(output.flag)),
        keep_archives=config["download"]["keep_archives"],
    script:
        "../workflow_scripts/download.py"


# Google Landmarks v2 (gldv2: index + test + retrieval solution; gldv2-train: train_clean.csv + train) from the official
# locations, MD5-verified per tar part, resumable; gldv2.download_parts fetches only the first N parts of each split.
rule download_gldv2:
    output:
        flag=os.path.join(config["data_root"], "{dataset}", ".download_complete"),
    log:
        "logs/download/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(GLDV2_DOWNLOADABLE),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=2880,
    params:
        data_root=lambda w, output: os.path.dirname(os.path.dirname(output.flag)),
        keep_archives=config["download"]["keep_archives"],
        parts=config["gldv2"]["download_parts"],
    script:
        "../workflow_scripts/download_gldv2.py"

# The embedded default dataset: demo (test), demo-val and demo-train, generated from scikit-image's photos.


rule demo_data:
    output:
        manifest=f"{DEMO_DATA}/manifest.json",
        gnd=[f"{DEMO_DATA}/{s}/gnd.json" for s in DEMO_SPLITS],
    log:
        "logs/demo_data/{ver}.log",
    benchmark:
        "benchmarks/demo_data/{ver}.tsv"
    conda:
        ENV
    threads: 3  # one process per split
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        demo=lambda w: (check_version(w, PLAN.v_demo()), config["demo"])[1],
        version=lambda w: w.ver,
        preset=PRESET,
    script:
        "../workflow_scripts/demo_data.py"

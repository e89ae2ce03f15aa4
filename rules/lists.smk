# Image lists: db and query entries (path, size, query box) and the ground truth as gnd.json. '{dataset}+1m' stacks
# the dataset's lists and the revisitop1m distractors' (queries and ground-truth indices unchanged). A plain folder's
# or a gnd.csv dataset's database is listed first by its own rule (db.json), so that editing its queries or ground
# truth re-runs only what reads them.


rule database_list:
    input:
        unpack(database_source),
    output:
        db=DB_LIST,
        manifest=beside(DB_LIST, "db.manifest.json"),
    log:
        PLAN.log_path("database_list"),
    benchmark:
        "benchmarks/database_list/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        dataset_dir=lambda w: (check_version(w, PLAN.v_lists(w.dataset)), PLAN.dataset_dir(w.dataset))[1],
        on_bad_image=config["on_bad_image"],
        max_image_pixels=config["max_image_pixels"],
        preset=PRESET,
        images=lambda w: listed_state(PLAN.canonical(w.dataset), "db"),  # a photo replaced by an older file
    script:
        "../workflow_scripts/database_list.py"


rule image_lists:
    input:
        unpack(dataset_source),
    output:
        lists=LISTS,
        gnd=GND,
        manifest=beside(LISTS, "manifest.json"),
    log:
        PLAN.log_path("image_lists"),
    benchmark:
        "benchmarks/image_lists/{dataset}/{ver}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        dataset_dir=lambda w: (check_version(w, PLAN.v_lists(w.dataset)), PLAN.dataset_dir(w.dataset))[1],
        crop_queries=config["crop_queries"],
        on_bad_image=config["on_bad_image"],
        max_image_pixels=config["max_image_pixels"],
        preset=PRESET,
        plus=lists_plus,
        images=lists_state,
    script:
        "../workflow_scripts/image_lists.py"

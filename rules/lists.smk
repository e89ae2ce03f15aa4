# Image lists: db and query entries (path, size, query box) and the ground truth as gnd.json.


def dataset_source(wildcards):
    """The files the lists depend on: the demo generator's output, a downloaded dataset, or the user's folder."""
    ds = canonical(wildcards.dataset)
    if ds in DEMO_SPLITS:
        return [f"results/demo_data/{v_demo()}/{ds}/gnd.json"]
    d = dataset_dir(ds)
    from retrieval.datasets import ground_truth_path

    gt = ground_truth_path(d, ds)
    if gt is not None:
        return [str(gt)]
    if ds in DOWNLOADABLE:
        return [os.path.join(d, ".download_complete")]
    if not os.path.isdir(d):
        raise WorkflowError(
            f"dataset '{wildcards.dataset}': folder {d} not found (data_root={config['data_root']}); put the images in "
            f"{d}/jpg/ (with gnd.json or gnd_{ds}.pkl for metrics), or set --config data_root=DIR"
        )
    return []


rule image_lists:
    input:
        dataset_source,
    output:
        lists="results/lists/{dataset}/{ver}/lists.json",
        gnd="results/lists/{dataset}/{ver}/gnd.json",
        manifest="results/lists/{dataset}/{ver}/manifest.json",
    params:
        dataset_dir=lambda w: (check_version(w, v_lists(w.dataset)), dataset_dir(w.dataset))[1],
        crop_queries=config["crop_queries"],
        preset=PRESET,
    log:
        log_path("image_lists"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        ENV
    script:
        "../workflow_scripts/image_lists.py"

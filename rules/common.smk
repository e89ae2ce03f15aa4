# Shared helpers: dataset resolution, artifact versions and wildcard constraints.
# A stage's version hashes its own configuration and the versions of its inputs, so changing one stage's
# configuration creates new paths for it and everything downstream; earlier versions stay on disk.
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow_scripts"))

from retrieval.datasets import ground_truth_path
from retrieval.runtime import stable_hash
from retrieval.versions import GENERATOR_VERSION

DEMO_SPLITS = ("demo", "demo-val", "demo-train")
ALIASES = {"roxford": "roxford5k", "rparis": "rparis6k"}
DOWNLOADABLE = ("roxford5k", "rparis6k")
METHODS = ("global",)
ENV = "../envs/retrieval.yaml"
PRESET = config["preset"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9.+\-]*",
    method=r"[A-Za-z0-9][A-Za-z0-9_+\-]*",
    ver=r"[0-9a-f]{8}",
    split=r"db|query",
    chunk=r"\d+",


def canonical(ds):
    return ALIASES.get(ds, ds)


def check_version(wildcards, expected):
    """Refuse to build a version path that the current configuration would not produce."""
    if wildcards.ver != expected:
        raise WorkflowError(
            f"{wildcards.ver} is not the version the current configuration gives ({expected}); request the top-level "
            "results/{dataset}_{method}.json targets, or restore the configuration that made it"
        )


def v_demo():
    return stable_hash({"generator": GENERATOR_VERSION, "demo": config["demo"]})


def dataset_dir(ds):
    ds = canonical(ds)
    if ds in DEMO_SPLITS:
        return f"results/demo_data/{v_demo()}/{ds}"
    return os.path.join(config["data_root"], ds)


def v_lists(ds):
    ds = canonical(ds)
    source = v_demo() if ds in DEMO_SPLITS else os.path.abspath(dataset_dir(ds))
    return stable_hash({"dataset": ds, "source": source, "crop_queries": config["crop_queries"]})


def extract_config():
    cfg = config["extract"]
    return {"backbone": cfg["backbone"], "n_chunks": cfg["n_chunks"], cfg["backbone"]: cfg[cfg["backbone"]]}


def v_local(ds):
    return stable_hash({"lists": v_lists(ds), "extract": extract_config()})


TRAIN = config["training_split"]


def v_codebook():
    return stable_hash({"local": v_local(TRAIN), "codebook": config["codebook"]})


def v_vlad(ds):
    return stable_hash({"local": v_local(ds), "codebook": v_codebook(), "aggregate": config["aggregate"]})


def v_whiten():
    return stable_hash({"vlad": v_vlad(TRAIN), "whiten": config["whiten"]["dim"]})


def v_global(ds):
    return stable_hash({"vlad": v_vlad(ds), "whiten": v_whiten(), "power": config["whiten"]["power"]})


def v_knn(ds):
    return stable_hash({"global": v_global(ds), "knn": config["knn"]})


def v_eval(ds):
    return stable_hash({"knn": v_knn(ds), "lists": v_lists(ds), "evaluate": config["evaluate"]})


def versions(ds):
    return {
        "demo_data": v_demo() if canonical(ds) in DEMO_SPLITS or canonical(TRAIN) in DEMO_SPLITS else None,
        "image_lists": v_lists(ds),
        "extract": v_local(ds),
        "extract_training": v_local(TRAIN),
        "codebook": v_codebook(),
        "aggregate": v_vlad(ds),
        "whiten": v_whiten(),
        "global": v_global(ds),
        "knn": v_knn(ds),
        "evaluate": v_eval(ds),
    }


def lists_dir(ds):
    return f"results/lists/{ds}/{v_lists(ds)}"


def local_store(ds, split):
    return f"results/local/{ds}/{v_local(ds)}/{split}/local.h5"


def log_path(stage, suffix=""):
    return f"logs/{stage}/{{dataset}}/{{ver}}{suffix}.log"


def dataset_source(wildcards):
    """The files the lists depend on: the demo generator's output, a downloaded dataset, or the user's folder."""
    ds = canonical(wildcards.dataset)
    if ds in DEMO_SPLITS:
        return [f"results/demo_data/{v_demo()}/{ds}/gnd.json"]
    d = dataset_dir(ds)
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


def check_evaluable(ds):
    if canonical(ds) == canonical(TRAIN):
        raise WorkflowError(
            f"dataset '{ds}' is the training split (training_split: {TRAIN}); the codebook and whitening were fitted "
            "on it, so its metrics would be inflated. Evaluate another dataset or change training_split."
        )


def global_hyperparameters():
    return {
        "training_split": TRAIN,
        "crop_queries": config["crop_queries"],
        "extract": extract_config(),
        "codebook": config["codebook"],
        "aggregate": config["aggregate"],
        "whiten": config["whiten"],
        "knn": config["knn"],
        "evaluate": config["evaluate"],
    }


def evaluation_json(wildcards):
    if wildcards.method not in METHODS:
        raise WorkflowError(f"unknown method '{wildcards.method}' in {wildcards.dataset}_{wildcards.method}; available: {', '.join(METHODS)}")
    check_evaluable(wildcards.dataset)
    return f"results/eval/{wildcards.dataset}/{v_eval(wildcards.dataset)}/{wildcards.method}.json"

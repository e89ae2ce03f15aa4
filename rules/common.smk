# Shared helpers: dataset resolution, artifact versions and wildcard constraints.
# A stage's version hashes its own configuration and the versions of its inputs, so changing one stage's
# configuration creates new paths for it and everything downstream; earlier versions stay on disk.
import json
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow_scripts"))

from snakemake.logging import logger

from retrieval.data.datasets import build_image_lists, ground_truth_path
from retrieval.names import DATASET_PATTERN, split_result_name
from retrieval.runtime import read_json, stable_hash, write_json
from retrieval.stores import feature_cache as fcache
from retrieval.versions import DECODER_VERSION, GENERATOR_VERSION

DEMO_SPLITS = ("demo", "demo-val", "demo-train")
ALIASES = {"roxford": "roxford5k", "rparis": "rparis6k"}
DOWNLOADABLE = ("roxford5k", "rparis6k", "revisitop1m")
GLDV2_DOWNLOADABLE = ("gldv2", "gldv2-train")  # rule download_gldv2
DISTRACTORS = "revisitop1m"  # {dataset}+1m: the dataset's database with these images appended
PLUS = "+1m"
METHODS = ("global", "whiten", "aqe", "adba", "superglobal", "sv", "ames", "ames_binary", "ssp", "asmk")
GLOBAL_DESCRIPTOR_METHODS = ("whiten", "aqe", "adba", "superglobal", "ssp")  # read global descriptors at evaluation
ENV = f"../envs/retrieval-{config['software_env']}.yaml"
PRESET = config["preset"]


wildcard_constraints:
    dataset=DATASET_PATTERN,
    collection=DATASET_PATTERN,
    photos=DATASET_PATTERN,
    method=r"[A-Za-z0-9][A-Za-z0-9_+\-]*",
    ver=r"[0-9a-f]{8}",
    space=DATASET_PATTERN,
    split=r"db|query",
    chunk=r"\d+",
    xv=r"[0-9a-f]{8}",
    pack=r"[0-9a-f]{16}",


def gpu_resource(n):
    """The `gpu` resource for n GPUs: n, or 0 with gpu_request: gres (the slurm plugin sends --gpus for
    any gpu > 0, so a GRES-only request must leave it at 0)."""
    return n if config["gpu_request"] == "gpus" else 0


def gres_resource(n):
    """The `gres` resource for n GPUs: "gpu:n" with gpu_request: gres (sent as --gres=gpu:n), else ""
    (the plugin sends no --gres for an empty value)."""
    return f"gpu:{n}" if config["gpu_request"] == "gres" and n else ""


def canonical(ds):
    if ds.endswith(PLUS):
        return canonical(ds[: -len(PLUS)]) + PLUS
    return ALIASES.get(ds, ds)


def distractor_base(ds):
    """The dataset under '{dataset}+1m' (its queries and ground truth, its database first), or None."""
    ds = canonical(ds)
    if not ds.endswith(PLUS):
        return None
    base = ds[: -len(PLUS)]
    if base == DISTRACTORS or base.endswith(PLUS):
        raise WorkflowError(
            f"dataset '{ds}': '{PLUS}' appends the {DISTRACTORS} distractors to another dataset, "
            f"e.g. roxford5k{PLUS}"
        )
    return base


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
    base = distractor_base(ds)
    if base is not None:
        return f"{dataset_dir(base)} + {dataset_dir(DISTRACTORS)}"
    if ds in DEMO_SPLITS:
        return f"results/demo_data/{v_demo()}/{ds}"
    return os.path.join(config["data_root"], ds)


def v_lists(ds):
    ds = canonical(ds)
    base = distractor_base(ds)
    if base is not None:
        return stable_hash({"dataset": ds, "base": v_lists(base), "distractors": v_lists(DISTRACTORS)})
    source = v_demo() if ds in DEMO_SPLITS else os.path.abspath(dataset_dir(ds))
    skip = {"on_bad_image": "skip"} if config["on_bad_image"] == "skip" else {}  # default: earlier versions hold
    decoder = {"decoder": DECODER_VERSION, "max_image_pixels": config["max_image_pixels"]}
    return stable_hash(
        {"dataset": ds, "source": source, "crop_queries": config["crop_queries"], **skip, **decoder, **gldv2_identity()}
    )


def gldv2_identity():
    """What in the gldv2 configuration changes a dataset's lists (nothing at the defaults: earlier versions hold)."""
    g = config["gldv2"]
    out = {
        k: g[k]
        for k in ("present_only", "train_list")
        if g[k] != {"present_only": False, "train_list": "train_clean.csv"}[k]
    }
    if g["exclude_landmarks"]:
        if not os.path.isfile(g["exclude_landmarks"]):
            raise WorkflowError(f"gldv2.exclude_landmarks: {g['exclude_landmarks']} not found")
        out["exclude_landmarks"] = _file_identity(g["exclude_landmarks"])
    return out


def extract_config(backbone=None):
    cfg = config["extract"]
    backbone = backbone or cfg["backbone"]
    return {"backbone": backbone, "n_chunks": cfg["n_chunks"], backbone: cfg[backbone]}


def v_local(ds, backbone=None):
    """Local descriptors of ``backbone`` (default: extract.backbone, the one sv and AMES read)."""
    return stable_hash({"lists": v_lists(ds), "extract": extract_config(backbone)})


def v_extract(ds, backbone, backbone_config):
    return stable_hash(
        {
            "lists": v_lists(ds),
            "extract": {"backbone": backbone, "n_chunks": config["extract"]["n_chunks"], backbone: backbone_config},
        }
    )


def v_ssp_local(ds):
    """The light query model's local features (SSP): sift with ssp.query_sift."""
    return v_extract(ds, "sift", config["ssp"]["query_sift"])


def ames_release_input(wildcards):
    """extract.backbone ames_import: the release file a chunk reads (a declared input: replacing it re-runs)."""
    if extraction_of(wildcards)[0] != "ames_import":
        return []
    from retrieval.stores.ames_release import release_file

    cfg = config["extract"]["ames_import"]
    if not cfg["dir"]:
        raise WorkflowError("extract.backbone: ames_import needs extract.ames_import.dir")
    return [str(release_file(cfg["dir"], canonical(wildcards.dataset), cfg["desc"], wildcards.split))]


def shortlist_backbone():
    """The backbone whose global descriptors make the shortlist (shortlist.source: backbone), else None."""
    sl = config["shortlist"]
    if sl["source"] != "backbone":
        return None
    b = sl["backbone"] or config["extract"]["backbone"]
    if b in ("sift", "ames_import"):
        raise WorkflowError(
            "shortlist.source: backbone needs a deep backbone (shortlist.backbone or extract.backbone: "
            "dinov2 | resnet); sift has no global descriptor, use shortlist.source: vlad"
        )
    return b


def queries_may_share_db(ds):
    """Whether the queries of a dataset can be uncropped database images (then a query chunk copies their database
    rows instead of extracting them again): a folder without ground truth (no boxes), or crop_queries: false."""
    if not config["crop_queries"]:
        return True
    ds = canonical(ds)
    if distractor_base(ds) is not None or ds in DEMO_SPLITS or ds in DOWNLOADABLE or ds == DISTRACTORS:
        return False
    return ground_truth_path(dataset_dir(ds), ds) is None


def shared_db_chunks(wildcards):
    """extract_local input: for a query chunk whose queries may share the database's pixels, the database chunks of
    the same extraction (its rows are copied from them); otherwise nothing."""
    if wildcards.split != "query" or not queries_may_share_db(wildcards.dataset):
        return []
    n = config["extract"]["n_chunks"]
    return [f"results/local/{wildcards.dataset}/{wildcards.ver}/db/chunk_{c}.h5" for c in range(n)]


def extraction_gpus(wildcards):
    """GPUs an extraction job needs: none for sift and imported descriptors, one for a deep backbone."""
    return 0 if extraction_of(wildcards)[0] in ("sift", "ames_import") else 1


def extraction_of(wildcards):
    """(backbone, its configuration) of an extraction path {ver}: the local one, the shortlist's or SSP's light one."""
    candidates = [config["extract"]["backbone"], shortlist_backbone()]
    for b in dict.fromkeys(c for c in candidates if c):
        if v_local(wildcards.dataset, b) == wildcards.ver:
            return b, config["extract"][b]
    if v_ssp_local(wildcards.dataset) == wildcards.ver:
        return "sift", config["ssp"]["query_sift"]
    raise WorkflowError(
        f"{wildcards.ver} is not the version the current configuration gives for the local descriptors of "
        f"{wildcards.dataset}; request the top-level results/{{dataset}}_{{method}}.json targets"
    )


TRAIN = config["training_split"]
CROSS = {"roxford5k": "rparis6k", "rparis6k": "roxford5k"}  # unsupervised_fit: cross, the field's convention


def fit_split(ds):
    """The dataset whose database images, without labels, fit the VLAD codebook and PCA-whitening used for ``ds``
    (unsupervised_fit: self, training, cross or a dataset name). '{dataset}+1m' uses its base dataset's."""
    mode = config["unsupervised_fit"]
    ds = canonical(ds)
    ds = distractor_base(ds) or ds
    if mode == "self":
        return ds
    if mode == "training":
        return canonical(TRAIN)
    if mode == "cross":
        return CROSS.get(ds, canonical(TRAIN))
    return canonical(mode)


def lw_space():
    """Lw is learned on the training split's global descriptors, so it is applied in that split's space."""
    return fit_split(TRAIN)


def v_codebook(space):
    return stable_hash({"local": v_local(space), "codebook": config["codebook"]})


def codebook_path(space):
    return f"results/codebook/{space}/{v_codebook(space)}/codebook.npz"


def v_vlad(ds, space=None):
    return stable_hash(
        {"local": v_local(ds), "codebook": v_codebook(space or fit_split(ds)), "aggregate": config["aggregate"]}
    )


def whiten_identity():
    w = config["whiten"]
    return {"dim": w["dim"], "min_images_per_dim": w["min_images_per_dim"], "max_images": w["max_images"]}


def v_whiten(space):
    return stable_hash({"vlad": v_vlad(space, space), "whiten": whiten_identity()})


def whiten_path(space):
    return f"results/whiten/{space}/{v_whiten(space)}/whiten.npz"


def import_file(ds, split):
    """shortlist.source import: the user's file with the global descriptors of one split."""
    from retrieval.stores.imports import find_import

    if not config["shortlist"]["import_dir"]:
        raise WorkflowError("shortlist.source: import needs shortlist.import_dir")
    try:
        return str(find_import(config["shortlist"]["import_dir"], canonical(ds), split))
    except FileNotFoundError as e:
        raise WorkflowError(str(e)) from e


def nn_import_file(ds):
    """shortlist.source ames_nn: the AMES shortlist file {import_dir}/{dataset}/{nn_file} (a declared input)."""
    from retrieval.stores.ames_release import nn_file

    sl = config["shortlist"]
    if not sl["import_dir"]:
        raise WorkflowError(
            "shortlist.source: ames_nn needs shortlist.import_dir (the folder holding {dataset}/" f"{sl['nn_file']})"
        )
    p = nn_file(sl["import_dir"], canonical(ds), sl["nn_file"])
    if not p.is_file():
        raise WorkflowError(f"shortlist.source: ames_nn: {p} not found (shortlist.nn_file names it)")
    return str(p)


def _file_identity(p):
    return [os.path.abspath(p), os.path.getsize(p), os.path.getmtime(p)]


def v_global(ds, space=None):
    if config["shortlist"]["source"] == "ames_nn":
        return stable_hash({"lists": v_lists(ds), "nn": _file_identity(nn_import_file(ds))})
    b = shortlist_backbone()
    if b is not None:
        return stable_hash({"local": v_local(ds, b), "shortlist": "backbone"})
    if config["shortlist"]["source"] == "import":
        files = {s: import_file(ds, s) for s in ("db", "query") if s == "db" or canonical(ds) != canonical(TRAIN)}
        stat = {s: [os.path.abspath(p), os.path.getsize(p), os.path.getmtime(p)] for s, p in files.items()}
        return stable_hash({"lists": v_lists(ds), "import": stat})
    space = space or fit_split(ds)
    return stable_hash({"vlad": v_vlad(ds, space), "whiten": v_whiten(space), "power": config["whiten"]["power"]})


def global_path(ds, split, space=None):
    """The global descriptors of a split: VLAD + PCA-whitening, the shortlist backbone's own, or imported."""
    if config["shortlist"]["source"] == "ames_nn":
        raise WorkflowError(
            f"{ds}: this needs global descriptors, but shortlist.source: ames_nn imports only a shortlist; "
            "global, sv, ames and ames_binary (with ames.checkpoint set) work from it, aqe, adba, "
            "superglobal, whiten, ssp and AMES training need shortlist.source vlad, backbone or import"
        )
    if shortlist_backbone() is not None:
        return f"results/global_backbone/{ds}/{v_global(ds)}/{split}.h5"
    if config["shortlist"]["source"] == "import":
        return f"results/global_import/{ds}/{v_global(ds)}/{split}.h5"
    space = space or fit_split(ds)
    return f"results/global/{ds}/{space}/{v_global(ds, space)}/{split}.h5"


def knn_identity():
    """What in knn's configuration changes its result: k, and for compressed search its settings (block is only
    how the exact search streams)."""
    kc = config["knn"]
    if kc["search"] == "exact":
        return {"k": kc["k"]}
    return {"k": kc["k"], "search": kc["search"], "ivfpq": kc["ivfpq"]}


def v_knn(ds):
    if config["shortlist"]["source"] == "asmk":
        return stable_hash({"asmk": v_asmk_search(ds)})
    return stable_hash({"global": v_global(ds), "knn": knn_identity()})


def v_eval(ds):
    return stable_hash({"knn": v_knn(ds), "lists": v_lists(ds), "evaluate": config["evaluate"]})


def versions(ds):
    b = shortlist_backbone()
    if config["shortlist"]["source"] == "asmk":
        return {
            "demo_data": v_demo() if canonical(ds) in DEMO_SPLITS or canonical(TRAIN) in DEMO_SPLITS else None,
            "image_lists": v_lists(ds),
            "extract": v_local(ds),
            "extract_training": v_local(TRAIN),
            "asmk_codebook": v_asmk_codebook(fit_split(ds)),
            "asmk_ivf": v_asmk_ivf(ds),
            "asmk_search": v_asmk_search(ds),
            "knn": v_knn(ds),
            "evaluate": v_eval(ds),
        }
    if b is not None or config["shortlist"]["source"] in ("import", "ames_nn"):
        return {
            "demo_data": v_demo() if canonical(ds) in DEMO_SPLITS or canonical(TRAIN) in DEMO_SPLITS else None,
            "image_lists": v_lists(ds),
            "extract": v_local(ds),
            "extract_shortlist": v_local(ds, b) if b else None,
            "global": v_global(ds),
            "knn": v_knn(ds),
            "evaluate": v_eval(ds),
        }
    return {
        "demo_data": v_demo() if canonical(ds) in DEMO_SPLITS or canonical(TRAIN) in DEMO_SPLITS else None,
        "image_lists": v_lists(ds),
        "extract": v_local(ds),
        "extract_fit": v_local(fit_split(ds)),
        "codebook": v_codebook(fit_split(ds)),
        "aggregate": v_vlad(ds),
        "whiten": v_whiten(fit_split(ds)),
        "global": v_global(ds),
        "knn": v_knn(ds),
        "evaluate": v_eval(ds),
    }


def export_desc():
    """The descriptor name in exported AMES file names: the backbone's (or the imported release's)."""
    b = config["extract"]["backbone"]
    return config["extract"]["ames_import"]["desc"] if b == "ames_import" else b


def lists_dir(ds):
    return f"results/lists/{ds}/{v_lists(ds)}"


def local_store(ds, split):
    return f"results/local/{ds}/{v_local(ds)}/{split}/local.h5"


def log_path(stage, suffix=""):
    return f"logs/{stage}/{{dataset}}/{{ver}}{suffix}.log"


def dataset_source(wildcards):
    """The files the lists depend on: the demo generator's output, a downloaded dataset, or the user's folder;
    for '{dataset}+1m' the lists of the dataset and of the distractors."""
    ds = canonical(wildcards.dataset)
    base = distractor_base(ds)
    if base is not None:
        return {
            "base_lists": f"{lists_dir(base)}/lists.json",
            "base_gnd": f"{lists_dir(base)}/gnd.json",
            "distractor_lists": f"{lists_dir(DISTRACTORS)}/lists.json",
        }
    if ds in DEMO_SPLITS:
        return {"source": [f"results/demo_data/{v_demo()}/{ds}/gnd.json"]}
    if uses_feature_cache(ds, config["extract"]["backbone"]):
        # the listed images too: a photo replaced in place (the folder's mtime unchanged) gets its new size
        lists = current_lists(ds)
        images = (
            []
            if lists is None
            else sorted({e["path"] for s in ("db", "query") for e in lists[s] if os.path.exists(e["path"])})
        )
        return {"source": _folder_source(ds), "images": images}
    return {"source": _folder_source(ds)}


def lists_plus(wildcards):
    """image_lists params: the input versions of a '{dataset}+1m' list, else None."""
    base = distractor_base(wildcards.dataset)
    if base is None:
        return None
    return {"base": v_lists(base), "distractor": v_lists(DISTRACTORS)}


def merge_chunks(wildcards):
    """The chunk files a split's store stacks: its own, or for '{dataset}+1m' the dataset's then (db) the
    distractors', extracted once and shared by every '+1m' variant; with the feature cache, the packs its rows are in
    (existing and planned)."""
    got = cached_merge(wildcards)
    if got is not None:
        xv, plan, _ = got
        return [] if plan is None else [f"{cache_dir(xv)}/{p}.h5" for p in plan.packs(wildcards.split)]
    n = config["extract"]["n_chunks"]
    base = distractor_base(wildcards.dataset)
    if base is None:
        parts = [(wildcards.dataset, wildcards.ver)]
    else:
        b, cfg = extraction_of(wildcards)
        parts = [(p, v_extract(p, b, cfg)) for p in ([base, DISTRACTORS] if wildcards.split == "db" else [base])]
    return [f"results/local/{p}/{v}/{wildcards.split}/chunk_{c}.h5" for p, v in parts for c in range(n)]


def merge_groups(wildcards):
    n = config["extract"]["n_chunks"]
    return [n, n] if distractor_base(wildcards.dataset) is not None and wildcards.split == "db" else [n]


def _folder_source(ds):
    d = dataset_dir(ds)
    gt = ground_truth_path(d, ds)
    if ds in GLDV2_DOWNLOADABLE and (gt is None or os.path.isdir(os.path.join(d, "_download"))):
        return [os.path.join(d, ".download_complete")]  # absent or begun by the download rule: let it finish
    if gt is not None and os.path.basename(gt) == "gnd.csv":  # its boxes and database list are inputs too
        return [str(gt)] + [
            os.path.join(d, f) for f in ("query_boxes.csv", "image_list.txt") if os.path.isfile(os.path.join(d, f))
        ]
    if gt is not None:
        return [str(gt)]
    if ds == DISTRACTORS and os.path.isfile(os.path.join(d, f"{DISTRACTORS}.txt")):
        return [os.path.join(d, f"{DISTRACTORS}.txt")]
    if ds in DOWNLOADABLE:
        return [os.path.join(d, ".download_complete")]
    if not os.path.isdir(d):
        raise WorkflowError(
            f"dataset '{ds}': folder {d} not found (data_root={config['data_root']}); put the images in "
            f"{d}/jpg/ (with gnd.json or gnd_{ds}.pkl for metrics), or set --config data_root=DIR"
        )
    # a plain folder: its list files, and the image folder (adding or removing images changes its mtime)
    listed = [os.path.join(d, f) for f in ("image_list.txt", "query_list.txt") if os.path.isfile(os.path.join(d, f))]
    return listed or [os.path.join(d, "jpg") if os.path.isdir(os.path.join(d, "jpg")) else d]


def check_evaluable(ds):
    if canonical(ds) == DISTRACTORS:
        raise WorkflowError(
            f"dataset '{ds}' is the distractor set: it has no queries. Evaluate a dataset with them "
            f"appended instead, e.g. roxford5k{PLUS}"
        )
    distractor_base(ds)  # refuses '{DISTRACTORS}+1m' and '+1m+1m'
    if canonical(ds) == canonical(TRAIN):
        raise WorkflowError(
            f"dataset '{ds}' is the training split (training_split: {TRAIN}); the codebook and whitening were fitted "
            "on it, so its metrics would be inflated. Evaluate another dataset or change training_split."
        )


def fitted_on(ds, method="global"):
    """What each fitted component behind results/{ds}_{method}.json was fitted on (the results JSON's fitted_on)."""
    out = {}

    def how(space):
        return {
            "split": space,
            "images": "database, no labels",
            "evaluated_dataset_itself": space == canonical(distractor_base(ds) or ds),
            "unsupervised_fit": config["unsupervised_fit"],
        }

    if config["shortlist"]["source"] == "vlad" and method != "asmk":
        space = lw_space() if method == "whiten" else fit_split(ds)
        out["codebook"] = how(space)
        out["whitening"] = {**how(space), "rule": whiten_identity()}  # publish adds whether it was applied
    if method == "asmk" or config["shortlist"]["source"] == "asmk":
        out["asmk_codebook"] = how(fit_split(ds))
    if method == "whiten":
        out["lw"] = {"split": canonical(TRAIN), "data": "same-label pairs of the training split"}
    if method in AMES_METHODS:
        out["ames"] = {"split": canonical(TRAIN), "data": "training split, labels via its global kNN"}
        if config["ames"]["select"] == "validation":
            out["ames_selection"] = {"split": canonical(VAL), "data": "validation split's ground truth"}
    if method == "ssp":
        out["ssp"] = {"split": ssp_split(), "data": "database images, no labels"}
    return out


def global_hyperparameters(ds=None):
    b = shortlist_backbone()
    if config["shortlist"]["source"] == "asmk":
        return {
            "training_split": TRAIN,
            "crop_queries": config["crop_queries"],
            "shortlist": {"source": "asmk"},
            "extract": extract_config(),
            "asmk": config["asmk"],
            "evaluate": config["evaluate"],
        }
    if config["shortlist"]["source"] == "ames_nn":
        return {
            "crop_queries": config["crop_queries"],
            "extract": extract_config(),
            "shortlist": {k: config["shortlist"][k] for k in ("source", "import_dir", "nn_file")},
            "evaluate": config["evaluate"],
        }
    if b is not None or config["shortlist"]["source"] == "import":
        sl = (
            {"source": "backbone", "extract": extract_config(b)}
            if b
            else {"source": "import", "import_dir": config["shortlist"]["import_dir"]}
        )
        return {
            "training_split": TRAIN,
            "crop_queries": config["crop_queries"],
            "extract": extract_config(),
            "shortlist": sl,
            "knn": config["knn"],
            "evaluate": config["evaluate"],
        }
    return {
        "training_split": TRAIN,
        "unsupervised_fit": config["unsupervised_fit"],
        "fit_split": fit_split(ds) if ds else None,
        "crop_queries": config["crop_queries"],
        "shortlist": {"source": "vlad"},
        "extract": extract_config(),
        "codebook": config["codebook"],
        "aggregate": config["aggregate"],
        "whiten": config["whiten"],
        "knn": config["knn"],
        "evaluate": config["evaluate"],
    }


def evaluation_path(ds, method):
    """The versioned evaluation JSON behind results/{ds}_{method}.json."""
    if method not in METHODS:
        raise WorkflowError(f"unknown method '{method}' in {ds}_{method}; available: {', '.join(METHODS)}")
    check_evaluable(ds)
    if method in GLOBAL_DESCRIPTOR_METHODS and config["shortlist"]["source"] == "asmk":
        raise WorkflowError(
            f"{ds}_{method}: {method} works on global descriptors and their neighbours, but "
            "shortlist.source: asmk ranks with local descriptors (no global vectors); global, asmk, sv, "
            "ames and ames_binary work from an ASMK shortlist"
        )
    if method == "global":
        return f"results/eval/{ds}/{v_eval(ds)}/global.json"
    if method == "asmk":
        return f"results/eval/{ds}/{v_asmk_eval(ds)}/asmk.json"
    if method == "sv":
        return f"results/eval/{ds}/{v_sv(ds)}/sv.json"
    if method in ("aqe", "adba"):
        return f"results/eval/{ds}/{v_qe(ds, method)}/{method}.json"
    if method == "superglobal":
        return f"results/eval/{ds}/{v_superglobal(ds)}/superglobal.json"
    if method == "whiten":
        return f"results/eval/{ds}/{v_lw_eval(ds)}/whiten.json"
    if method == "ssp":
        return f"results/eval/{ds}/{v_ssp(ds)}/ssp.json"
    return f"results/eval/{ds}/{v_eval_ames(ds, method)}/{method}.json"


def evaluation_json(wildcards):
    """The evaluation behind results/{result}.json, where result is {dataset}_{method} (see retrieval/names.py)."""
    try:
        ds, method = split_result_name(wildcards.result, METHODS)
    except ValueError as e:
        raise WorkflowError(str(e)) from None
    return evaluation_path(ds, method)


def publish_inputs(wildcards):
    """The versioned evaluation, and for VLAD global descriptors the whitening file whose decision it records."""
    inputs = {"evaluation": evaluation_json(wildcards)}
    ds, method = split_result_name(wildcards.result, METHODS)
    if config["shortlist"]["source"] == "vlad" and method != "asmk":
        space = lw_space() if method == "whiten" else fit_split(ds)
        inputs["whiten"] = whiten_path(space)
    return inputs


def publish_fitted_on(wildcards):
    return fitted_on(*split_result_name(wildcards.result, METHODS))


# ------------------------------------------------------------------------------------------ AMES versions
AMES_METHODS = ("ames", "ames_binary")
VAL = config["ames"]["validation_split"]


def v_knn_train():
    return stable_hash({"global": v_global(TRAIN), "k": config["ames"]["train"]["num_candidates"]})


def v_itq():
    return stable_hash({"local": v_local(TRAIN), "itq": config["ames"]["itq"]})


def ames_checkpoint(method):
    """ames.checkpoint.{ames,ames_binary}: a released or earlier-trained model used as it is (no training)."""
    p = config["ames"]["checkpoint"][method]
    if p and not os.path.isfile(p):
        raise WorkflowError(f"ames.checkpoint.{method}: {p} not found")
    return p


def train_validation():
    """Early stopping of train_ames (ames.train.patience > 0) on ames.validation_split: what its validation reads,
    or None when training runs all its epochs."""
    a = config["ames"]
    if a["train"].get("patience", 0) <= 0:
        return None
    if canonical(VAL) == canonical(TRAIN):
        raise WorkflowError(f"ames.validation_split '{VAL}' must differ from the training split (early stopping)")
    return {
        "split": VAL,
        "q_desc": a["q_desc"],
        "db_desc": a["db_desc"],
        "num_rerank": a["train"].get("validation_rerank", 25),
        "lambdas": a["validation_grid"]["lambda"],
        "gammas": a["validation_grid"]["gamma"],
        "junk_mode": a["junk_mode"],
        "fusion": a["fusion"],
    }


def train_validation_inputs(wildcards):
    if train_validation() is None:
        return {}
    return {
        "val_query": local_store(VAL, "query"),
        "val_db": local_store(VAL, "db"),
        "val_knn": f"results/knn/{VAL}/{v_knn(VAL)}/knn.h5",
        "val_lists": f"{lists_dir(VAL)}/lists.json",
        "val_gnd": f"{lists_dir(VAL)}/gnd.json",
    }


def v_ames_model():
    a = config["ames"]
    if ames_checkpoint("ames"):
        return stable_hash({"checkpoint": _file_identity(ames_checkpoint("ames"))})
    key = {"local": v_local(TRAIN), "knn": v_knn_train(), "model": a["model"], "train": a["train"]}
    val = train_validation()
    if val is not None:
        key["validation"] = {**val, "local": v_local(VAL), "knn": v_knn(VAL), "lists": v_lists(VAL)}
    return stable_hash(key)


def distill_train_config():
    """The student's schedule: the teacher's, with ames.distill's overrides; no early stopping (it distils for
    ames.distill.epochs)."""
    return {**config["ames"]["train"], **config["ames"]["distill"], "patience": 0}


def v_ames_binary_model():
    if ames_checkpoint("ames_binary"):
        return stable_hash({"checkpoint": _file_identity(ames_checkpoint("ames_binary"))})
    return stable_hash({"teacher": v_ames_model(), "itq": v_itq(), "train": distill_train_config()})


def ames_model_path(method):
    if ames_checkpoint(method):
        return ames_checkpoint(method)
    if method == "ames":
        return f"results/ames_model/{v_ames_model()}/model.pt"
    return f"results/ames_binary_model/{v_ames_binary_model()}/model.pt"


def v_ames_store(ds, method):
    model = v_ames_model() if method == "ames" else v_ames_binary_model()
    return stable_hash({"model": model, "local": v_local(ds), "db_desc": config["ames"]["db_desc"]})


def ames_store_path(ds, method):
    return f"results/ames_store/{ds}/{v_ames_store(ds, method)}/{method}.h5"


def ames_max_rerank():
    """Logits are cached for the longest shortlist any selection can use: the grid's, or the fixed point's."""
    a = config["ames"]
    return max(a["num_rerank"] + ([a["fixed"]["num_rerank"]] if a["select"] == "fixed" else []))


def v_logits(ds, method):
    a = config["ames"]
    model = v_ames_model() if method == "ames" else v_ames_binary_model()
    keys = ("q_desc", "db_desc", "junk_mode")
    return stable_hash(
        {
            "model": model,
            "local": v_local(ds),
            "knn": v_knn(ds),
            "lists": v_lists(ds),
            "max_rerank": ames_max_rerank(),
            **{k: a[k] for k in keys},
        }
    )


def v_eval_ames(ds, method):
    a = config["ames"]
    keys = ("num_rerank", "lambda", "gamma", "select", "fixed", "junk_mode", "bootstrap", "fusion")
    val = v_logits(VAL, method) if a["select"] == "validation" else None
    return stable_hash(
        {
            "logits": v_logits(ds, method),
            "validation": val,
            "global": v_eval(ds),
            **{k: a[k] for k in keys},
            "csv_top": config["evaluate"]["csv_top"],
        }
    )


def evaluate_ames_inputs(wildcards):
    ds, method = wildcards.dataset, wildcards.method
    inputs = {
        "logits": f"results/ames_logits/{ds}/{v_logits(ds, method)}/{method}.h5",
        "knn": f"results/knn/{ds}/{v_knn(ds)}/knn.h5",
        "lists": f"{lists_dir(ds)}/lists.json",
        "gnd": f"{lists_dir(ds)}/gnd.json",
        "baseline": f"results/eval/{ds}/{v_eval(ds)}/global.json",
    }
    if config["ames"]["select"] == "validation":
        if canonical(VAL) in (canonical(ds), canonical(TRAIN)):
            raise WorkflowError(
                f"ames.validation_split '{VAL}' must differ from the evaluated dataset '{ds}' and the training split"
            )
        inputs.update(
            {
                "val_logits": f"results/ames_logits/{VAL}/{v_logits(VAL, method)}/{method}.h5",
                "val_knn": f"results/knn/{VAL}/{v_knn(VAL)}/knn.h5",
                "val_lists": f"{lists_dir(VAL)}/lists.json",
                "val_gnd": f"{lists_dir(VAL)}/gnd.json",
            }
        )
    return inputs


def ames_versions(ds, method):
    out = versions(ds)
    out.update(
        {
            "ames_model": v_ames_model(),
            "logits": v_logits(ds, method),
            "evaluate": v_eval_ames(ds, method),
            "global_evaluate": v_eval(ds),
        }
    )
    if not ames_checkpoint(method):
        out["knn_train"] = v_knn_train()
    if method == "ames_binary":
        out["ames_binary_model"] = v_ames_binary_model()
        if not ames_checkpoint(method):
            out["itq"] = v_itq()
    if config["ames"]["select"] == "validation":
        out["validation_logits"] = v_logits(VAL, method)
    return out


def ames_hyperparameters(ds, method):
    a = config["ames"]
    keys = (
        "q_desc",
        "db_desc",
        "num_rerank",
        "lambda",
        "gamma",
        "select",
        "fusion",
        "fixed",
        "validation_split",
        "junk_mode",
        "model",
        "train",
    )
    out = {"global": global_hyperparameters(ds), **{k: a[k] for k in keys}}
    if ames_checkpoint(method):
        out["checkpoint"] = os.path.abspath(ames_checkpoint(method))
        del out["train"]
    elif method == "ames_binary":
        out.update({"itq": a["itq"], "distill": a["distill"]})
    return out


def v_qe(ds, method):
    dba = config["adba"] if method == "adba" else None
    return stable_hash(
        {
            "global": v_global(ds),
            "knn": v_knn(ds),
            "lists": v_lists(ds),
            "aqe": config["aqe"],
            "adba": dba,
            "evaluate": config["evaluate"],
            "bootstrap": config["ames"]["bootstrap"],
        }
    )


def v_superglobal(ds):
    return stable_hash(
        {
            "global": v_global(ds),
            "knn": v_knn(ds),
            "lists": v_lists(ds),
            "superglobal": config["superglobal"],
            "evaluate": config["evaluate"],
            "bootstrap": config["ames"]["bootstrap"],
        }
    )


def v_lw():
    return stable_hash({"global": v_global(TRAIN), "lists": v_lists(TRAIN), "lw": config["lw"]})


def v_lw_eval(ds):
    return stable_hash(
        {
            "global": v_global(ds, lw_space()),
            "lw": v_lw(),
            "knn": v_knn(ds),
            "lists": v_lists(ds),
            "evaluate": config["evaluate"],
            "bootstrap": config["ames"]["bootstrap"],
        }
    )


# ------------------------------------------------------------------------------ spatial verification, report
def v_sv(ds):
    return stable_hash(
        {
            "local": v_local(ds),
            "knn": v_knn(ds),
            "lists": v_lists(ds),
            "sv": config["sv"],
            "evaluate": config["evaluate"],
            "bootstrap": config["ames"]["bootstrap"],
        }
    )


def report_inputs(wildcards):
    ds = wildcards.dataset
    check_evaluable(ds)
    methods = config["report"]["methods"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise WorkflowError(f"report.methods: unknown {unknown}; available: {', '.join(METHODS)}")
    inputs = {"lists": f"{lists_dir(ds)}/lists.json", "gnd": f"{lists_dir(ds)}/gnd.json"}
    for m in methods:
        inputs[f"result_{m}"] = f"results/{ds}_{m}.json"
        inputs[f"ranking_{m}"] = evaluation_path(ds, m).removesuffix(".json") + "_ranking.h5"
    if ("ames" in methods and not ames_checkpoint("ames")) or (
        "ames_binary" in methods and not ames_checkpoint("ames_binary") and not ames_checkpoint("ames")
    ):
        inputs["curves_ames"] = f"results/ames_model/{v_ames_model()}/curves.json"
        inputs["bench_train_ames"] = f"benchmarks/train_ames/{v_ames_model()}.tsv"
    if "ames_binary" in methods and not ames_checkpoint("ames_binary"):
        inputs["curves_ames_binary"] = f"results/ames_binary_model/{v_ames_binary_model()}/curves.json"
        inputs["bench_train_ames_binary"] = f"benchmarks/train_ames_binary/{v_ames_binary_model()}.tsv"
    for m in ("ames", "ames_binary"):
        if m in methods:
            inputs[f"bench_logits_{m}"] = f"benchmarks/ames_logits/{ds}/{v_logits(ds, m)}/{m}.tsv"
    if "sv" in methods:
        inputs["bench_sv"] = f"benchmarks/evaluate_sv/{ds}/{v_sv(ds)}.tsv"
    inputs["bench_knn"] = f"benchmarks/knn/{ds}/{v_knn(ds)}.tsv"
    return inputs


def compare_inputs(wildcards):
    ds = wildcards.dataset
    check_evaluable(ds)
    unknown = [m for m in config["compare"]["methods"] if m not in METHODS]
    if unknown:
        raise WorkflowError(f"compare.methods: unknown {unknown}; available: {', '.join(METHODS)}")
    inputs = {f"result_{m}": f"results/{ds}_{m}.json" for m in config["compare"]["methods"]}
    inputs["knn"] = f"results/knn/{ds}/{v_knn(ds)}/knn.h5"
    return inputs


# ------------------------------------------------------------------------------------------------ SSP
def ssp_split():
    return config["ssp"]["anchors"]["split"] or TRAIN


def v_anchors(space):
    """SSP's anchors in the gallery space ``space`` (the evaluated dataset's fit split): PQ codewords of the
    ssp split's database descriptors in that space."""
    if config["shortlist"]["source"] != "vlad":
        raise WorkflowError(
            "ssp: the light query model maps into the VLAD gallery space; it needs shortlist.source: vlad"
        )
    return stable_hash({"global": v_global(ssp_split(), space), "anchors": config["ssp"]["anchors"]})


def v_query_model(space):
    return stable_hash(
        {
            "light": v_ssp_local(ssp_split()),
            "global": v_global(ssp_split(), space),
            "anchors": v_anchors(space),
            "train": config["ssp"]["train"],
            "codebook": v_codebook(space),
            "whiten": v_whiten(space),
            "aggregate": config["aggregate"],
            "power": config["whiten"]["power"],
        }
    )


def v_ssp(ds):
    return stable_hash(
        {
            "model": v_query_model(fit_split(ds)),
            "light": v_ssp_local(ds),
            "global": v_global(ds),
            "lists": v_lists(ds),
            "evaluate": config["evaluate"],
            "bootstrap": config["ames"]["bootstrap"],
            "cost_images": config["ssp"]["cost_images"],
        }
    )


# ------------------------------------------------------------------------------------------------ ASMK
def asmk_kernel_config():
    """What the inverted file and the search use (the codebook has its own version)."""
    a = config["asmk"]
    return {k: a[k] for k in ("binary", "use_idf", "multiple_assignment", "alpha", "similarity_threshold")}


def v_asmk_codebook(space):
    return stable_hash({"local": v_local(space), "asmk_codebook": config["asmk"]["codebook"]})


def asmk_codebook_path(space):
    """ASMK's visual words, fitted like the VLAD codebook on the fit split's database images (unsupervised_fit)."""
    return f"results/asmk_codebook/{space}/{v_asmk_codebook(space)}/codebook.npz"


def v_asmk_ivf(ds):
    a = config["asmk"]
    return stable_hash(
        {
            "local": v_local(ds),
            "codebook": v_asmk_codebook(fit_split(ds)),
            "binary": a["binary"],
            "db_multiple_assignment": a["multiple_assignment"]["db"],
        }
    )


def v_asmk_search(ds):
    return stable_hash(
        {"ivf": v_asmk_ivf(ds), "local": v_local(ds), "lists": v_lists(ds), "asmk": asmk_kernel_config()}
    )


def asmk_knn_path(ds):
    """The ASMK ranking of a dataset: the shortlist itself with shortlist.source: asmk, else its own file."""
    if config["shortlist"]["source"] == "asmk":
        return f"results/knn/{ds}/{v_knn(ds)}/knn.h5"
    return f"results/asmk_search/{ds}/{v_asmk_search(ds)}/knn.h5"


def v_asmk_eval(ds):
    return stable_hash(
        {
            "asmk": v_asmk_search(ds),
            "global": v_eval(ds),
            "evaluate": config["evaluate"],
            "bootstrap": config["ames"]["bootstrap"],
        }
    )


def asmk_versions(ds):
    return {
        **versions(ds),
        "asmk_codebook": v_asmk_codebook(fit_split(ds)),
        "asmk_ivf": v_asmk_ivf(ds),
        "asmk_search": v_asmk_search(ds),
        "evaluate": v_asmk_eval(ds),
        "global_evaluate": v_eval(ds),
    }


# ------------------------------------------------------------------------------------------ search new photos
def search_space(collection):
    """New photos are described in the collection's space (its codebook and whitening), never in their own."""
    return fit_split(collection) if config["shortlist"]["source"] == "vlad" else None


def v_search_knn(collection, photos):
    space = search_space(collection)
    return stable_hash(
        {
            "query": v_global(photos, space),
            "db": v_global(collection, space),
            "k": config["search"]["k"],
            "knn": knn_identity(),
        }
    )


def v_search(collection, photos):
    s = config["search"]
    sv = {"sv": config["sv"], "local": [v_local(photos), v_local(collection)]} if s["rerank"] == "sv" else {}
    return stable_hash(
        {"knn": v_search_knn(collection, photos), "lists": [v_lists(photos), v_lists(collection)], "search": s, **sv}
    )


def search_dir(collection, photos):
    return f"results/search/{collection}/{photos}/{v_search(collection, photos)}"


def search_inputs(wildcards):
    c, p = wildcards.collection, wildcards.photos
    inputs = {
        "knn": f"results/search/{c}/{p}/{v_search_knn(c, p)}/knn.h5",
        "photos_lists": f"{lists_dir(p)}/lists.json",
        "collection_lists": f"{lists_dir(c)}/lists.json",
    }
    if config["search"]["rerank"] == "sv":
        inputs.update(photos_local=local_store(p, "db"), collection_local=local_store(c, "db"))
    return inputs


# ------------------------------------------------------------------------------ feature cache (incremental extraction)
# Folder datasets take their local descriptors from a content-addressed cache (retrieval/feature_cache.py): the plan
# is made here, at DAG-build time, from the dataset's current lists and the packs on disk, so a dry run shows the
# extraction of the new or changed photos only. The generated demo splits, '{dataset}+1m', the R1M distractors and
# imported AMES descriptors keep the positional chunks (extract_local).

FEATURES = "results/features"
_PLANS = {}
_PACKS = {}  # (xv, pack) -> {"items", "backbone", "config"}: what a planned pack job extracts


def uses_feature_cache(ds, backbone):
    """Whether a dataset's extraction with ``backbone`` comes from the feature cache: images on disk in a folder."""
    ds = canonical(ds)
    if not config["extract"]["cache"] or backbone == "ames_import":
        return False
    if ds in DEMO_SPLITS or ds == DISTRACTORS or distractor_base(ds) is not None:
        return False
    d = dataset_dir(ds)
    if not os.path.isdir(d):
        return False
    try:
        return all(os.path.exists(p) for p in _folder_source(ds))  # not waiting for a download
    except WorkflowError:
        return False


def cache_key(backbone, backbone_config):
    return fcache.extraction_key(backbone, backbone_config, DECODER_VERSION, config["max_image_pixels"])


def cache_dir(xv):
    return f"{FEATURES}/{xv}/packs"


def current_lists(ds):
    """The dataset's lists as image_lists will write them: its lists.json when newer than every source and listed
    image, else built here (the same function; header reads only). None when they cannot be built (bad input:
    image_lists then fails with its own message)."""
    path = f"{lists_dir(ds)}/lists.json"
    if os.path.isfile(path):
        lists = read_json(path)
        t = os.path.getmtime(path)
        sources = _folder_source(ds) + [e["path"] for s in ("db", "query") for e in lists[s]]
        try:
            if all(os.path.getmtime(p) <= t for p in sources):
                return lists
        except FileNotFoundError:
            pass
    try:
        lists, _ = build_image_lists(
            dataset_dir(ds),
            ds,
            config["crop_queries"],
            config["on_bad_image"],
            config["max_image_pixels"],
            config["gldv2"],
        )
    except (OSError, ValueError) as e:
        logger.warning(f"{ds}: the feature cache cannot plan the extraction before image_lists runs ({e})")
        return None
    return lists


def feature_plan(ds, backbone, backbone_config):
    """(xv, plan or None) of a dataset's extraction from the cache, made once per DAG build."""
    xv = cache_key(backbone, backbone_config)
    key = (canonical(ds), xv)
    if key not in _PLANS:
        lists = current_lists(ds)
        plan = None
        if lists is not None:
            ext = config["extract"]
            plan = fcache.plan_extraction(
                lists, fcache.load_index(cache_dir(xv)), xv, ext["n_chunks"], ext["min_chunk_images"]
            )
            for pack, items in plan.new_packs.items():
                _PACKS[(xv, pack)] = {"items": items, "backbone": backbone, "config": backbone_config}
                _write_pack_plan(xv, pack, _PACKS[(xv, pack)])
            n = len({(e["path"], str(e.get("crop"))) for s in ("db", "query") for e in lists[s]})
            logger.info(
                f"feature cache {cache_dir(xv)}: {ds}: {plan.n_new} of {n} images (and query boxes) to extract, "
                f"in {len(plan.new_packs)} job(s)"
            )
        _PLANS[key] = (xv, plan, lists)
    return _PLANS[key]


def cached_merge(wildcards):
    """(xv, plan, lists) when the split's store is assembled from the feature cache, else None."""
    b, cfg = extraction_of(wildcards)
    if not uses_feature_cache(wildcards.dataset, b):
        return None
    return feature_plan(wildcards.dataset, b, cfg)


def merge_images(wildcards):
    """merge_local input: the split's image files (a photo replaced in place re-plans), with the feature cache."""
    got = cached_merge(wildcards)
    if got is None or got[2] is None:
        return []
    return sorted({e["path"] for e in got[2][wildcards.split] if os.path.exists(e["path"])})


def merge_cache_params(wildcards):
    got = cached_merge(wildcards)
    return None if got is None else {"xv": got[0], "dir": cache_dir(got[0])}


def _pack_plan_path(xv, pack):
    return f"{FEATURES}/{xv}/plans/{pack}.json"


def _write_pack_plan(xv, pack, job):
    """Record what a planned pack extracts (content-addressed: its name hashes it), for a job whose DAG is built again
    where it runs (a SLURM job re-plans after sibling packs finished, when this pack would no longer be grouped the
    same way)."""
    path = _pack_plan_path(xv, pack)
    if not os.path.isfile(path):
        write_json(path, job)


def planned_pack(wildcards):
    """What a pack job extracts: from this run's plan, else from the pack's sidecar when it exists (the same value,
    so Snakemake sees its parameters unchanged; packs are immutable and take no declared inputs: the images they
    were made from may since have moved), else from the plan recorded when it was planned."""
    key = (wildcards.xv, wildcards.pack)
    if key not in _PACKS:
        sidecar = f"{cache_dir(wildcards.xv)}/{wildcards.pack}.json"
        if os.path.isfile(sidecar):
            _PACKS[key] = fcache.pack_job(fcache.read_sidecar(sidecar))
        elif os.path.isfile(_pack_plan_path(*key)):
            _PACKS[key] = read_json(_pack_plan_path(*key))
        else:
            raise WorkflowError(
                f"{cache_dir(wildcards.xv)}/{wildcards.pack}.h5 is not a pack the current configuration "
                "plans; request the top-level results/{dataset}_{method}.json targets"
            )
    return _PACKS[key]


def pack_param(wildcards):
    return json.dumps(planned_pack(wildcards), sort_keys=True)


def pack_gpus(wildcards):
    return 0 if planned_pack(wildcards)["backbone"] == "sift" else 1

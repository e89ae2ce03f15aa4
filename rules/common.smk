# What must be Snakemake: wildcard constraints, resources, input functions of `wildcards`, the version check. The version graph and the artifact paths are plain Python in
# workflow_scripts/retrieval/plan.py (one Plan(config), PLAN below; unit-tested in tests/unit/test_plan.py): a stage's
# version hashes its own configuration and the versions of its inputs, so changing one stage's configuration creates
# new paths for it and everything downstream; earlier versions stay on disk.
# The lists the DAG plans from, their freshness check, the full-ranking check of a target, the memory of the jobs
# that hold a ranking and the feature cache's DAG-time plan are the package's too (retrieval.dag_lists: DagLists and
# PackPlans, DAG_LISTS and PACKS below; retrieval.job_memory), unit-tested; what is here adapts them to Snakemake's
# input functions and logger.
import functools
import json
import re
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow_scripts"))

from snakemake.logging import logger

from retrieval.dag_lists import DagLists, PackPlans
from retrieval.evaluation.results import (
    RETIRE as STALE_RETIRE,
    output_gone,
    outputs_gone_message,
    published_datasets,
    published_outputs_gone,
    run_options,
    stale_message,
    stale_published,
)
from retrieval.names import DATASET_PATTERN, check_dataset_name, split_result_name
from retrieval.plan import (
    AMES_BINARY_MODEL,
    AMES_LOGITS,
    AMES_MODEL,
    AMES_STORE,
    ANCHORS,
    ASMK_CODEBOOK,
    ASMK_IVF,
    ASMK_SEARCH,
    BENCH_EXTRACT,
    BENCH_KNN,
    BENCH_LOGITS,
    BENCH_SV,
    BENCH_TRAIN_AMES,
    BENCH_TRAIN_AMES_BINARY,
    CHUNK,
    CODEBOOK,
    DB_LIST,
    DEMO_DATA,
    DEPRECATED_METHODS,
    DEMO_SPLITS,
    DISTRACTORS,
    DOWNLOADABLE,
    EVAL,
    FEATURES,
    GLOBAL,
    GLOBAL_BACKBONE,
    GLOBAL_IMPORT,
    GLDV2_DOWNLOADABLE,
    GND,
    ITQ,
    KNN,
    KNN_TRAIN,
    LISTS,
    LOCAL,
    LW,
    METHODS,
    QUERY_MODEL,
    SEARCH_KNN,
    VLAD,
    WHITEN,
    Plan,
    PlanError,
    beside,
    fill,
)
from retrieval import input_errors, job_memory
from retrieval.runtime import is_readable, stable_hash
from retrieval.stores.local_store import missing_sources


class _Planned:
    """PLAN's methods, with a PlanError raised as the WorkflowError (same message) these functions raised when they
    lived here."""

    def __init__(self, plan):
        self._plan = plan

    def __getattr__(self, name):
        attr = getattr(self._plan, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except PlanError as e:
                err = WorkflowError(str(e))
                if getattr(e, input_errors.SAID, False):  # warned of already (dag_lists): not again by its wrapper
                    input_errors.mark_said(err)
                raise err from None

        return call


def benchmark_sv_inputs(wildcards):
    """The shortlists benchmark_ames times spatial verification on (benchmark.ames.sv_dataset; "" leaves it out). A
    dataset that is not there is named with the key (it was reported by image_lists as an unknown dataset)."""
    d = config["benchmark"]["ames"]["sv_dataset"]
    if not d:
        return {}
    if PLAN.canonical(d) not in DEMO_SPLITS:
        try:
            PLAN.folder_source(PLAN.canonical(d))
        except WorkflowError as e:
            raise WorkflowError(f"benchmark.ames.sv_dataset: {e}") from None
    return {"sv_query": PLAN.local_store(d, "query"), "sv_db": PLAN.local_store(d, "db"), "sv_knn": PLAN.knn_path(d)}


def _renamed_methods(key):
    """config[key]["methods"] with deprecated method names replaced by their new ones, saying so."""
    methods = config[key]["methods"]
    old = [m for m in methods if m in DEPRECATED_METHODS]
    if old:
        logger.warning(
            f"{key}.methods: "
            + ", ".join(f"'{m}' is now '{DEPRECATED_METHODS[m]}'" for m in old)
            + " (old name deprecated)"
        )
    # a method under both names is refused before (Plan.config_problems, in the Snakefile)
    return [DEPRECATED_METHODS.get(m, m) for m in methods]


for _key in ("compare", "report"):
    config[_key]["methods"] = _renamed_methods(_key)

PLAN = _Planned(Plan(config))
_dag_lists = DagLists(PLAN._plan, config, logger.warning)
DAG_LISTS = _Planned(_dag_lists)  # the lists the DAG plans from, once a build
PACKS = _Planned(PackPlans(_dag_lists, config, logger.info, lambda: workflow.dryrun))  # the feature cache's plan
TRAIN = PLAN.train
VAL = PLAN.val
ENV = f"../envs/retrieval-{config['software_env']}.yaml"
PRESET = config["preset"]


wildcard_constraints:
    dataset=DATASET_PATTERN,
    collection=DATASET_PATTERN,
    photos=DATASET_PATTERN,
    method=r"[A-Za-z0-9][A-Za-z0-9_+\-]*",
    ver=r"[0-9a-f]{8}",
    space=DATASET_PATTERN,
    side=r"db|query",  # one side of a dataset: its database or its queries (not a dataset split)
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


def check_version(wildcards, expected):
    """Refuse to build a version path that the current configuration would not produce."""
    if wildcards.ver != expected:
        raise WorkflowError(
            f"{wildcards.ver} is not the version the current configuration gives ({expected}); request the top-level "
            "results/{dataset}_{method}.json targets, or restore the configuration that made it"
        )


def ames_release_input(wildcards):
    """extract.backbone ames_import: the release file a chunk reads (a declared input: replacing it re-runs)."""
    if extraction_of(wildcards)[0] != "ames_import":
        return []
    from retrieval.stores.ames_release import release_file

    cfg = config["extract"]["ames_import"]
    if not cfg["dir"]:
        raise WorkflowError("extract.backbone: ames_import needs extract.ames_import.dir")
    path = release_file(cfg["dir"], PLAN.canonical(wildcards.dataset), cfg["desc"], wildcards.side)
    if not path.is_file():
        # Snakemake's MissingInputException named the file only, not the key that chose it (helper-99's trial)
        tail = path.name[len(cfg["desc"]) :]  # _gallery_local.hdf5 or _query_local.hdf5: this side's files
        others = sorted(p.name[: -len(tail)] for p in path.parent.glob(f"*{tail}")) if path.parent.is_dir() else []
        raise WorkflowError(
            f"extract.ames_import: {path} not found (desc: {cfg['desc']}, dir: {cfg['dir']})"
            + (f"; the folder holds the descriptors {others}: set extract.ames_import.desc" if others else "")
            + ("" if path.parent.is_dir() else f"; the folder {path.parent} does not exist")
        )
    return [str(path)]


def shared_db_chunks(wildcards):
    """extract_local input: for a query chunk whose queries may share the database's pixels, the database chunks of
    the same extraction (its rows are copied from them); otherwise nothing."""
    if wildcards.side != "query" or not PLAN.queries_may_share_db(wildcards.dataset):
        return []
    return PLAN.chunk_paths(wildcards.dataset, wildcards.ver, "db")


def extraction_gpus(wildcards):
    """GPUs an extraction job needs: none for sift and imported descriptors, one for a deep backbone."""
    return 0 if extraction_of(wildcards)[0] in ("sift", "ames_import") else 1


def extraction_of(wildcards):
    """(backbone, its configuration without device) of an extraction path {ver}: the local one, the shortlist's or
    SSP's light one (Plan.extraction_params)."""
    return PLAN.extraction_params(wildcards.dataset, wildcards.ver)


def dataset_source(wildcards):
    """The files the lists depend on: the demo generator's output, a downloaded dataset, or the user's folder;
    for '{dataset}+1m' the lists of the dataset and of the distractors."""
    ds = PLAN.canonical(wildcards.dataset)
    base = PLAN.distractor_base(ds)
    if base is not None:
        return {
            "base_lists": PLAN.lists_json(base),
            "base_gnd": PLAN.gnd_json(base),
            "distractor_lists": PLAN.lists_json(DISTRACTORS),
        }
    if ds in DEMO_SPLITS:
        return {"source": [f"{PLAN.dataset_dir(ds)}/gnd.json"]}
    if PLAN.database_apart(ds):
        # the database list, its own rule's; the queries' files and the query images that are not database images
        return {
            "database": PLAN.database_json(ds),
            "source": watched(PLAN.query_source(ds)),
            "images": listed_images(ds, "query", exclude="db"),
        }
    return {"source": watched(PLAN.folder_source(ds)), "images": listed_images(ds, "db", "query")}


def database_source(wildcards):
    """The files a database listed apart depends on: image_list.txt or the scanned folders, and its images."""
    ds = PLAN.canonical(wildcards.dataset)
    if not PLAN.database_apart(ds):
        raise WorkflowError(f"dataset '{ds}': its database is named by its ground truth, not listed apart")
    return {"source": watched(PLAN.database_source(ds)), "images": listed_images(ds, "db")}


# Snakemake 9 expands "<name>" in a rule's input paths (pathvars: lower-case letters, digits, _), with no escape: a
# photo named "Tom <b>bold.jpg" failed every job that watched it (UndefinedPathvarException). A "{" or "}" in a path an
# input function returns is read as a wildcard, and doubling it does not escape it there (WildcardError, naming no
# file). Such a photo (or folder) is listed, extracted and searched like any other; only its path is not declared as
# an input, so replacing it in place (the same name) is not noticed until the folder or list changes.
PATHVAR_LIKE = re.compile(r"<[a-z][a-z0-9_]*>")


@functools.cache
def _unwatched(path, why):
    logger.warning(f"{path}: its name holds {why}: not watched for changes")


def watched(paths):
    """The paths that can be declared as Snakemake inputs: those without "<name>" (a path variable) or a brace."""
    out = []
    for p in paths:
        if PATHVAR_LIKE.search(p):
            _unwatched(p, "<...>, which Snakemake reads as a path variable")
        elif "{" in p or "}" in p:
            _unwatched(p, "{ or }, which Snakemake reads as a wildcard")
        else:
            out.append(p)
    return out


def listed_images(ds, *sides, exclude=None):
    """The images of the given sides of a dataset's current lists, when it uses the feature cache (none otherwise): a
    photo replaced in place (the folder's mtime unchanged) then gets its new size. ``exclude``: leave out the images
    of that side. The database side of a dataset that lists it apart comes from its database list alone. A photo
    this process may not read is left out (Snakemake would fail recording its metadata): given read permission
    (``chmod`` keeps its size and mtime) it joins the inputs, and the lists are built again and read it."""
    if not PLAN.uses_feature_cache(ds, config["extract"]["backbone"]):
        return []
    lists = planning_lists(ds) if sides == ("db",) else current_lists(ds)
    if lists is None:
        return []
    skip = {e["path"] for e in lists[exclude]} if exclude else set()
    paths = {e["path"] for s in sides for e in lists[s] if e["path"] not in skip and os.path.exists(e["path"])}
    return watched(sorted(p for p in paths if is_readable(p)))


def listed_state(ds, *sides, exclude=None):
    """image_lists / database_list params: a digest of the byte size and mtime (ns) of every image listed_images
    declares (None without the feature cache). A photo replaced in place by an older file (``cp -p``, a restore from
    a backup) is older than the lists, so the mtime trigger misses it and the lists kept its old size; Snakemake's
    params trigger sees the digest change."""
    paths = listed_images(ds, *sides, exclude=exclude)
    if not paths:
        return None
    return stable_hash([(p, st.st_size, st.st_mtime_ns) for p in paths for st in [os.stat(p)]], 16)


def lists_state(wildcards):
    """image_lists params: listed_state of the images dataset_source declares."""
    ds = PLAN.canonical(wildcards.dataset)
    if PLAN.distractor_base(ds) is not None or ds in DEMO_SPLITS:
        return None
    if PLAN.database_apart(ds):
        return listed_state(ds, "query", exclude="db")
    return listed_state(ds, "db", "query")


def lists_plus(wildcards):
    """image_lists params: the input versions of a '{dataset}+1m' list, else None."""
    base = PLAN.distractor_base(wildcards.dataset)
    if base is None:
        return None
    return {"base": PLAN.v_lists(base), "distractor": PLAN.v_lists(DISTRACTORS)}


def drop_broken_store(wildcards):
    """A merged store is a virtual HDF5 file over its chunks or feature-cache packs: with one of them deleted
    (`rm -r results/features/{x}`, README) it cannot be read, yet Snakemake keeps an output whose missing inputs it
    could make again. A run that executes jobs removes such a store (and its manifest), so the next job that reads
    it has the files extracted again and the store merged again; a dry run, --touch and the informational modes
    (--summary, --dag, ...) only say so."""
    store = fill(LOCAL, **dict(wildcards.items()))
    if not os.path.isfile(store):
        return
    try:
        gone = missing_sources(store)
    except OSError:
        return  # not a readable HDF5 file: the readers name it
    if not gone:
        return
    first = os.path.normpath(gone[0])
    what = f"{store} reads {len(gone)} file(s) that no longer exist ({first}{', ...' if len(gone) > 1 else ''})"
    if workflow.executor_plugin is None or workflow.dryrun or workflow.touch:
        logger.warning(
            f"{what}: a run removes it, and a job that reads it then has them extracted again and the store merged "
            "again (this job list leaves those jobs out)"
        )
        return
    for path in (store, beside(store, "manifest.json")):
        if os.path.isfile(path):
            os.remove(path)
    logger.warning(
        f"{what}: removed (it cannot be read); a job that reads it has them extracted again and the store merged again"
    )


def merge_chunks(wildcards):
    """The chunk files a split's store stacks: its own, or for '{dataset}+1m' the dataset's then (db) the
    distractors', extracted once and shared by every '+1m' variant; with the feature cache, the packs its rows are in
    (existing and planned). A store whose files were deleted is removed first (drop_broken_store)."""
    drop_broken_store(wildcards)
    got = cached_merge(wildcards)
    if got is not None:
        xv, plan, _ = got
        return [] if plan is None else [f"{PLAN.cache_dir(xv)}/{p}.h5" for p in plan.packs(wildcards.side)]
    base = PLAN.distractor_base(wildcards.dataset)
    if base is None:
        parts = [(wildcards.dataset, wildcards.ver)]
    else:
        b, cfg = extraction_of(wildcards)
        parts = [(p, PLAN.v_extract(p, b, cfg)) for p in ([base, DISTRACTORS] if wildcards.side == "db" else [base])]
    return [c for p, v in parts for c in PLAN.chunk_paths(p, v, wildcards.side)]


def merge_indexes(wildcards):
    """The pack indexes (sidecars) of merge_chunks' packs: a pack whose index is lost is extracted again (the planner
    counts its images as new; with only its .h5 as input the job was skipped and merge_local failed)."""
    got = cached_merge(wildcards)
    if got is None or got[1] is None:
        return []
    xv, plan, _ = got
    return [f"{PLAN.cache_dir(xv)}/{p}.json" for p in plan.packs(wildcards.side)]


def merge_groups(wildcards):
    n = config["extract"]["n_chunks"]
    return [n, n] if PLAN.distractor_base(wildcards.dataset) is not None and wildcards.side == "db" else [n]


def result_name(wildcards):
    """(dataset, method) of results/{result}.json (see retrieval/names.py); a deprecated method name is accepted
    with a message naming the new one, and published under the name that was asked for."""
    try:
        ds, method = split_result_name(wildcards.result, METHODS + tuple(DEPRECATED_METHODS))
    except ValueError as e:  # no method (results/demo.json), or a name no dataset can have
        raise WorkflowError(PLAN.result_is_dataset(wildcards.result) or str(e)) from None
    if method in DEPRECATED_METHODS:
        logger.warning(
            f"results/{wildcards.result}.json: method '{method}' is deprecated, now '{DEPRECATED_METHODS[method]}' "
            f"(results/{ds}_{DEPRECATED_METHODS[method]}.json is the same result)"
        )
    return ds, DEPRECATED_METHODS.get(method, method)


def evaluation_json(wildcards):
    """The evaluation behind results/{result}.json, where result is {dataset}_{method}."""
    return PLAN.evaluation_path(*result_name(wildcards))


def check_full_ranking(ds, method):
    DAG_LISTS.check_full_ranking(ds, method)


_GONE_SAID = set()  # published results named as naming removed files, once a DAG build


def planned_output_gone(gone, ds, method, published):
    """Whether ``gone``, an evaluation file that ``published``, the published result of ``ds`` and ``method``, names
    and that is gone (retrieval.evaluation.results.output_gone), is one this configuration's evaluation would make
    (its folder; another version's published result is published again anyway, its input having changed), and this
    run was not asked to make either again (a forced published copy needs the evaluation again)."""
    try:
        planned = PLAN.evaluation_path(ds, method)
    except WorkflowError:  # said where the evaluation is planned
        return False
    same = os.path.normpath(os.path.dirname(gone)) == os.path.normpath(os.path.dirname(planned))
    return same and not _forced(gone, planned, published)


def _forced(*paths):
    """Whether this run makes any of ``paths`` again whatever their state (Snakemake's own settings): -F; -R naming
    one of them or a rule that makes one; -f with one of them as a target."""
    dag = workflow.dag_settings
    wanted = {os.path.normpath(p) for p in paths}
    if dag.forceall or (dag.forcetargets and wanted & {os.path.normpath(str(t)) for t in dag.targets or ()}):
        return True
    named = [str(f) for f in dag.forcerun or ()]
    files = {os.path.normpath(f) for f in named if not workflow.is_rule(f)}
    rules = [workflow.get_rule(f) for f in named if workflow.is_rule(f)]
    return bool(wanted & files) or any(r.is_producer(p) for r in rules for p in wanted)


def publish_inputs(wildcards):
    """The versioned evaluation, and for VLAD global descriptors the whitening file whose decision it records. A
    published result that names evaluation files Snakemake removed after a failed job is said, with the remedy:
    Snakemake then finds nothing to do for it (helper-149)."""
    ds, method = result_name(wildcards)
    check_full_ranking(ds, method)
    published = f"results/{wildcards.result}.json"
    if published not in _GONE_SAID:
        _GONE_SAID.add(published)  # read once a DAG build
        gone = output_gone(published) if os.path.isfile(published) else None
        if gone is not None and planned_output_gone(gone, ds, method, published):
            logger.warning(outputs_gone_message(published, gone))
    inputs = {"evaluation": PLAN.evaluation_path(ds, method)}
    if config["shortlist"]["source"] == "vlad" and method != "asmk":
        space = PLAN.lw_space() if method == "lw" else PLAN.fit_split(ds)
        inputs["whiten"] = PLAN.whiten_path(space)
    return inputs


def superglobal_whitening(wildcards):
    """evaluate_superglobal's extra input: for VLAD global descriptors, the PCA-whitening file of the dataset's space,
    whose decision (applied or not) resolves superglobal.query_pool auto."""
    if config["shortlist"]["source"] != "vlad":
        return {}
    return {"whiten": PLAN.whiten_path(PLAN.fit_split(wildcards.dataset))}


def publish_fitted_on(wildcards):
    return PLAN.fitted_on(*split_result_name(wildcards.result, METHODS + tuple(DEPRECATED_METHODS)))


def train_validation_inputs(wildcards):
    if PLAN.train_validation() is None:
        return {}
    return {
        "val_query": PLAN.local_store(VAL, "query"),
        "val_db": PLAN.local_store(VAL, "db"),
        "val_knn": PLAN.knn_path(VAL),
        "val_lists": PLAN.lists_json(VAL),
        "val_gnd": PLAN.gnd_json(VAL),
    }


def evaluate_ames_inputs(wildcards):
    ds, method = wildcards.dataset, wildcards.method
    inputs = {
        "logits": PLAN.logits_path(ds, method),
        "knn": PLAN.knn_path(ds),
        "lists": PLAN.lists_json(ds),
        "gnd": PLAN.gnd_json(ds),
        "baseline": PLAN.baseline_path(ds),
    }
    if config["ames"]["select"] == "validation":
        if PLAN.same_data(VAL, ds) or PLAN.same_data(VAL, TRAIN):  # by folder too (helper-140: an alias)
            raise WorkflowError(
                f"ames.validation_split '{VAL}' must differ from the evaluated dataset '{ds}' and the training split"
                + (
                    ""
                    if PLAN.canonical(VAL) in (PLAN.canonical(ds), PLAN.canonical(TRAIN))
                    else f" (both read {PLAN.shared_folder(VAL, ds) or PLAN.shared_folder(VAL, TRAIN)})"
                )
            )
        inputs.update(
            {
                "val_logits": PLAN.logits_path(VAL, method),
                "val_knn": PLAN.knn_path(VAL),
                "val_lists": PLAN.lists_json(VAL),
                "val_gnd": PLAN.gnd_json(VAL),
            }
        )
    if PLAN.ames_geometry():  # spatial verification's inliers, fused into the score (README, "AMES and the geometry")
        inputs.update({f"sv_{k}": v for k, v in PLAN.sv_paths(ds).items()})
        if config["ames"]["select"] == "validation":
            inputs.update({f"val_sv_{k}": v for k, v in PLAN.sv_paths(VAL).items()})
    return inputs


def report_inputs(wildcards):
    ds = wildcards.dataset
    PLAN.check_evaluable(ds)
    methods = config["report"]["methods"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise WorkflowError(f"report.methods: unknown {unknown}; available: {', '.join(METHODS)}")
    inputs = {"lists": PLAN.lists_json(ds), "gnd": PLAN.gnd_json(ds)}
    for m in methods:
        inputs[f"result_{m}"] = f"results/{ds}_{m}.json"
        inputs[f"ranking_{m}"] = PLAN.evaluation_path(ds, m).removesuffix(".json") + "_ranking.h5"
    if _trains(methods, "ames"):
        inputs["curves_ames"] = beside(PLAN.ames_model_path("ames"), "curves.json")
    if _trains(methods, "ames_binary"):
        inputs["curves_ames_binary"] = beside(PLAN.ames_model_path("ames_binary"), "curves.json")
    return inputs


def _trains(methods, model):
    """Whether the report's methods use a model this workflow trains (not one given by ames.checkpoint)."""
    if model == "ames_binary":
        return "ames_binary" in methods and not PLAN.ames_checkpoint("ames_binary")
    return ("ames" in methods and not PLAN.ames_checkpoint("ames")) or (
        "ames_binary" in methods and not PLAN.ames_checkpoint("ames_binary") and not PLAN.ames_checkpoint("ames")
    )


def report_benchmarks(wildcards):
    """The benchmark files of the report's timing table (kNN, sv, the AMES logits and training, the dataset's own
    extraction chunks), read where they exist and not declared as inputs: a missing one (benchmarks/ deleted, or
    results copied without it) would otherwise re-run its job, up to AMES training, for a table of times."""
    ds, methods = wildcards.dataset, config["report"]["methods"]
    paths = [fill(BENCH_KNN, dataset=ds, ver=PLAN.v_knn(ds))]
    if "sv" in methods:
        paths.append(fill(BENCH_SV, dataset=ds, ver=PLAN.v_sv(ds)))
    paths += [
        fill(BENCH_LOGITS, dataset=ds, ver=PLAN.v_logits(ds, m), method=m)
        for m in ("ames", "ames_binary")
        if m in methods
    ]
    if _trains(methods, "ames"):
        paths.append(fill(BENCH_TRAIN_AMES, ver=PLAN.v_ames_model()))
    if _trains(methods, "ames_binary"):
        paths.append(fill(BENCH_TRAIN_AMES_BINARY, ver=PLAN.v_ames_binary_model()))
    return paths + PLAN.extraction_benchmarks(ds)


def compare_inputs(wildcards):
    ds = wildcards.dataset
    PLAN.check_evaluable(ds)
    PLAN.check_ground_truth(ds, f"results/{ds}_compare.md and .json (the method table)")
    unknown = [m for m in config["compare"]["methods"] if m not in METHODS]
    if unknown:
        raise WorkflowError(f"compare.methods: unknown {unknown}; available: {', '.join(METHODS)}")
    inputs = {f"result_{m}": f"results/{ds}_{m}.json" for m in config["compare"]["methods"]}
    inputs["knn"] = PLAN.knn_path(ds)
    return inputs


def checked_search_dir(wildcards):
    """The search's versioned folder; a WorkflowError naming the allowed characters for a refused folder name, or the
    photos' missing folder as photos to search (not told of ground truth for metrics)."""
    try:
        check_dataset_name(wildcards.collection)
        check_dataset_name(wildcards.photos)
    except ValueError as e:
        raise WorkflowError(str(e)) from None
    photos = PLAN.canonical(wildcards.photos)
    if photos not in DEMO_SPLITS and PLAN.distractor_base(photos) is None:  # '{dataset}+1m' has no folder of its own
        # a missing folder, said as photos; the collection is no hint for a misspelt photos folder (helper-174)
        PLAN.folder_source(photos, searched=True, not_offered=(PLAN.canonical(wildcards.collection),))
    return PLAN.search_dir(wildcards.collection, wildcards.photos)


def search_inputs(wildcards):
    c, p = wildcards.collection, wildcards.photos
    inputs = {
        "knn": PLAN.search_knn_path(c, p),
        # the database lists only (db.json where listed apart): a collection's ground truth (gnd.csv, query boxes)
        # is not the search's input, so a mistake in it does not block a search, nor an edit re-run one
        "photos_lists": PLAN.side_lists_json(p, "db"),
        "collection_lists": PLAN.side_lists_json(c, "db"),
    }
    if config["search"]["rerank"] == "sv":
        inputs.update(photos_local=PLAN.local_store(p, "db"), collection_local=PLAN.local_store(c, "db"))
    return inputs


# ------------------------------------------------------------------------------ feature cache (incremental extraction)
# Folder datasets take their local descriptors from a content-addressed cache (retrieval/feature_cache.py): the plan
# is made at DAG-build time (retrieval/dag_lists.py: PackPlans), from the dataset's current lists and the packs on
# disk, so a dry run shows the extraction of the new or changed photos only. The generated demo splits, '{dataset}+1m', the R1M distractors and
# imported AMES descriptors keep the positional chunks (extract_local).


def current_lists(ds):
    """retrieval.dag_lists.DagLists.lists: the dataset's lists as image_lists will write them (None: bad input)."""
    return DAG_LISTS.lists(ds)


def current_database(ds):
    """retrieval.dag_lists.DagLists.database: the database list of a dataset that lists it apart."""
    return DAG_LISTS.database(ds)


def planning_lists(ds):
    """retrieval.dag_lists.DagLists.planning: the lists the feature cache plans from."""
    return DAG_LISTS.planning(ds)


def feature_plan(ds, backbone, backbone_config):
    """retrieval.dag_lists.PackPlans.extraction: (xv, plan or None, lists) of a dataset's extraction from the cache."""
    return PACKS.extraction(ds, backbone, backbone_config)


def cached_merge(wildcards):
    """(xv, plan, lists) when the split's store is assembled from the feature cache, else None."""
    b, cfg = extraction_of(wildcards)
    if not PLAN.uses_feature_cache(wildcards.dataset, b):
        return None
    return feature_plan(wildcards.dataset, b, cfg)


def merge_images(wildcards):
    """merge_local input: the split's image files (a photo replaced in place re-plans), with the feature cache."""
    got = cached_merge(wildcards)
    if got is None or got[2] is None:
        return []
    paths = {e["path"] for e in got[2][wildcards.side] if os.path.exists(e["path"]) and is_readable(e["path"])}
    return watched(sorted(paths))  # not a photo this process may not read: Snakemake would fail recording it


def merge_cache_params(wildcards):
    """merge_local's cache parameters: the cache, and where a photo is served another cached row than its own (one
    overwritten in place with bytes cached elsewhere, or written back), a digest of those rows: the packs read may
    be the same, and the store would not be merged again (helper-123's trial). Absent otherwise, so a store merged
    before it existed is not merged again."""
    got = cached_merge(wildcards)
    if got is None:
        return None
    out = {"xv": got[0], "dir": PLAN.cache_dir(got[0])}
    moved = got[1].displaced.get(wildcards.side) if got[1] is not None else None
    if moved:
        out["rows_served"] = stable_hash(moved, 16)
    return out


def planned_pack(wildcards):
    """retrieval.dag_lists.PackPlans.pack: what a pack job extracts."""
    return PACKS.pack(wildcards.xv, wildcards.pack)


def pack_param(wildcards):
    return json.dumps(planned_pack(wildcards), sort_keys=True)


def pack_gpus(wildcards):
    return 0 if planned_pack(wildcards)["backbone"] == "sift" else 1


def ranking_mem_mb(base, rankings=1):
    """mem_mb of a job that holds a dataset's neighbours or full ranking (knn, and every evaluation):
    retrieval.dag_lists.DagLists.ranking_mem_mb, from the sizes read at plan time for a plain folder or gnd.csv
    dataset and for '{dataset}+1m' (whose evaluations asked a fixed 2000-4000 MB for about 2.3 GB, 7 GB for ssp);
    other datasets get ``base`` (GLDv2's lists are not read here: 760k header reads)."""

    def mem_mb(wildcards):
        return DAG_LISTS.ranking_mem_mb(wildcards.dataset, base, rankings)

    return mem_mb


def knn_mem_mb(base, ranking=True):
    """mem_mb of a job that searches a database's global descriptors (knn; search_knn with ranking False, its
    ranking being the new photos' top k): the ranking's (ranking_mem_mb) or ``base``, plus an IVF-PQ search's
    training sample and codes, from the database file's shape (retrieval.dag_lists.DagLists.ivfpq_mem_mb;
    Snakemake evaluates this again once the file exists)."""

    def mem_mb(wildcards, input):
        held = DAG_LISTS.ranking_mem_mb(wildcards.dataset, base) if ranking else base
        return held + DAG_LISTS.ivfpq_mem_mb(input.db)

    return mem_mb


def pack_mem_mb(wildcards):
    """A pack job's mem_mb: retrieval.job_memory.pack_mem_mb of its planned photos and k."""
    job = planned_pack(wildcards)
    return job_memory.pack_mem_mb(job["backbone"], int(job["config"].get("k", 1000)), len(job["items"]))


def warn_stale_published():
    """When a run ends: name every published result that a file it names was re-computed after (in place, for
    another target), so nobody reads its old numbers as current (README, "A published file is as fresh as its last
    request"), and every one whose evaluation files Snakemake removed after a failed job (helper-149)."""
    try:
        stale = stale_published("results")
    except Exception as e:  # a check at the end of a run never fails it (a malformed results file)
        logger.warning(f"the check for stale published results failed ({type(e).__name__}: {e}); skipped")
        return
    try:
        gone = [(p, g) for p, g in published_outputs_gone("results") if _planned_gone(p, g)]
    except Exception as e:  # as above
        logger.warning(f"the check for published results naming removed files failed ({type(e).__name__}: {e})")
        gone = []
    for published, newer in stale:
        if published not in dict(gone):
            logger.warning(stale_message(published, newer))
    for published, missing in gone:
        logger.warning(outputs_gone_message(published, missing))
    # asking again was the only remedy named, and a moved folder refuses it (helper-135); said only where a stale
    # file's folder is gone (after every stale warning, it read as if something had moved: helper-139)
    if any(_folder_gone(published) for published, _ in stale):
        logger.warning(f"({STALE_RETIRE})")
    if (stale or gone) and (
        options := run_options(workflow.overwrite_configfiles, dict(workflow.config_settings.config or {}))
    ):
        logger.warning(options)


def _planned_gone(published, gone):
    """planned_output_gone for a published result by its path: one of another configuration, or whose name or plan
    cannot be read, is not said (a user who deleted old evaluations would hear of them after every run)."""
    try:
        ds, method = split_result_name(os.path.basename(published).removesuffix(".json"), METHODS)
        return planned_output_gone(gone, ds, method, published)
    except Exception:  # noqa: BLE001 -- a check at the end of a run never fails it
        return False


def _folder_gone(published):
    """Whether a published file's dataset (a search's collection or photos) is a user's folder that is missing."""
    try:
        return any(PLAN.folder_missing(n) for n in published_datasets(published, [*METHODS, "compare"]))
    except WorkflowError:
        return False

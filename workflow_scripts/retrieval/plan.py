"""The version graph and the artifact paths of the workflow, in plain Python (rules/common.smk makes one ``Plan``).

A stage's version (8 hex digits) hashes its own configuration and the versions of its inputs, so changing one stage's
configuration creates new paths for it and everything downstream; earlier versions stay on disk. ``Plan(config)``
takes the validated configuration and answers every version, path and provenance question the rules ask; the
functions that need Snakemake (input functions of ``wildcards``, the feature cache's DAG-time plan, logging) stay in
rules/common.smk and delegate here. tests/unit/test_plan.py tests it without Snakemake.

Artifact path patterns are spelled once, here: ``{dataset}``/``{ver}``-style fields, used as they are by the rules'
``output:`` and filled by the ``Plan`` methods that request them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

from retrieval.data.datasets import (
    GLDV2_SOLUTION,
    GLDV2_TRAIN_LISTS,
    IMAGE_SUFFIXES,
    database_apart,
    image_folders,
)
from retrieval.data.datasets import ground_truth_path as _ground_truth_path
from retrieval.data.gnd import holds_labels
from retrieval.methods.ames.operating_point import fixed_point
from retrieval.names import DATASET_PATTERN
from retrieval.runtime import file_sha1, stable_hash
from retrieval.search.ivfpq import plan_ivfpq
from retrieval.stores import feature_cache as fcache
from retrieval.stores.ames_release import nn_file
from retrieval.stores.imports import find_import
from retrieval.versions import (
    ASMK_VERSION,
    BACKBONE_VERSIONS,
    DECODER_VERSION,
    FIT_VERSION,
    GENERATOR_VERSION,
    SSP_VERSION,
)

DEMO_SPLITS = ("demo", "demo-val", "demo-train")
ALIASES = {"roxford": "roxford5k", "rparis": "rparis6k"}
DOWNLOADABLE = ("roxford5k", "rparis6k", "revisitop1m")
GLDV2_DOWNLOADABLE = ("gldv2", "gldv2-train")  # rule download_gldv2
DISTRACTORS = "revisitop1m"  # {dataset}+1m: the dataset's database with these images appended
PLUS = "+1m"
METHODS = ("global", "lw", "aqe", "adba", "superglobal", "sv", "ames", "ames_binary", "ssp", "asmk")
# earlier method names still accepted (a deprecation message names the new one): "whiten" was supervised Lw whitening,
# easily confused with the PCA-whitening of the VLAD (config key whiten, artifact results/whiten/)
DEPRECATED_METHODS = {"whiten": "lw"}
GLOBAL_DESCRIPTOR_METHODS = ("lw", "aqe", "adba", "superglobal", "ssp")  # read global descriptors at evaluation
AMES_METHODS = ("ames", "ames_binary")
CROSS = {"roxford5k": "rparis6k", "rparis6k": "roxford5k"}  # unsupervised_fit: cross, the field's convention
FEATURES = "results/features"

# Artifact paths, each spelled once: the fields are the rules' wildcards, so a rule's output uses the pattern as it
# is (or with fixed fields filled by ``fill``) and the Plan method that requests the artifact fills the rest.
DEMO_DATA = "results/demo_data/{ver}"
LISTS = "results/lists/{dataset}/{ver}/lists.json"
GND = "results/lists/{dataset}/{ver}/gnd.json"
DB_LIST = "results/lists/{dataset}/{ver}/db.json"  # the database side alone, where it is listed apart
CHUNK = "results/local/{dataset}/{ver}/{side}/chunk_{chunk}.h5"
LOCAL = "results/local/{dataset}/{ver}/{side}/local.h5"
CODEBOOK = "results/codebook/{dataset}/{ver}/codebook.npz"
VLAD = "results/vlad/{dataset}/{space}/{ver}/{side}.h5"
WHITEN = "results/whiten/{dataset}/{ver}/whiten.npz"
GLOBAL = "results/global/{dataset}/{space}/{ver}/{side}.h5"
GLOBAL_BACKBONE = "results/global_backbone/{dataset}/{ver}/{side}.h5"
GLOBAL_IMPORT = "results/global_import/{dataset}/{ver}/{side}.h5"
KNN = "results/knn/{dataset}/{ver}/knn.h5"
EVAL = "results/eval/{dataset}/{ver}/{method}.json"
KNN_TRAIN = "results/knn_train/{ver}/knn.h5"
ITQ = "results/itq/{ver}/itq.npz"
AMES_MODEL = "results/ames_model/{ver}/model.pt"
AMES_BINARY_MODEL = "results/ames_binary_model/{ver}/model.pt"
AMES_STORE = "results/ames_store/{dataset}/{ver}/{method}.h5"
AMES_LOGITS = "results/ames_logits/{dataset}/{ver}/{method}.h5"
LW = "results/lw/{ver}/lw.npz"
ANCHORS = "results/anchors/{space}/{ver}/anchors.npy"
QUERY_MODEL = "results/query_model/{space}/{ver}/adapter.pt"
ASMK_CODEBOOK = "results/asmk_codebook/{space}/{ver}/codebook.npz"
ASMK_IVF = "results/asmk_ivf/{dataset}/{ver}/ivf.h5"
ASMK_SEARCH = "results/asmk_search/{dataset}/{ver}/knn.h5"
SEARCH = "results/search/{collection}/{photos}/{ver}"
SEARCH_KNN = SEARCH + "/knn.h5"
# Snakemake's benchmark files that the report reads (per-job timings)
BENCH_EXTRACT = "benchmarks/extract_local/{dataset}/{ver}/{side}_{chunk}.tsv"
BENCH_KNN = "benchmarks/knn/{dataset}/{ver}.tsv"
BENCH_SV = "benchmarks/evaluate_sv/{dataset}/{ver}.tsv"
BENCH_TRAIN_AMES = "benchmarks/train_ames/{ver}.tsv"
BENCH_TRAIN_AMES_BINARY = "benchmarks/train_ames_binary/{ver}.tsv"
BENCH_LOGITS = "benchmarks/ames_logits/{dataset}/{ver}/{method}.tsv"


def canonical(ds: str) -> str:
    """A dataset's canonical name: ``roxford`` -> ``roxford5k`` (``ALIASES``), also under ``+1m``."""
    if ds.endswith(PLUS):
        return canonical(ds[: -len(PLUS)]) + PLUS
    return ALIASES.get(ds, ds)


def fill(pattern: str, **fields: Any) -> str:
    """The pattern with the given fields filled in, the others left as wildcards: fill(EVAL, method="sv"). Dataset
    fields (``dataset``, ``space``) take the canonical name, so an alias asks for the same artifacts."""
    for k, v in fields.items():
        v = canonical(str(v)) if k in ("dataset", "space", "collection") else v
        pattern = pattern.replace("{" + k + "}", str(v))
    return pattern


def beside(pattern: str, name: str) -> str:
    """A file in the same folder as ``pattern``'s: beside(KNN, "manifest.json")."""
    return pattern.rpartition("/")[0] + "/" + name


def _method_hint(name, method):
    """ "; did you mean ..." for a result name whose method (``method``, after its last underscore) is unknown: the
    closest method name (any case; a deprecated one's new name), also over the splits at the name's earlier
    underscores, since a misspelt ``ames_binary`` (``coll_ames_binray``) leaves ``binray`` after the last one; "" when
    nothing is close."""
    known = {m.lower(): m for m in [*METHODS, *DEPRECATED_METHODS]}
    near = known.get(method.lower()) or next(iter(difflib.get_close_matches(method.lower(), list(known), n=1)), None)
    if near:
        return f"; did you mean '{DEPRECATED_METHODS.get(known.get(near, near), known.get(near, near))}'?"
    if difflib.get_close_matches(method.lower(), ["compare"], n=1, cutoff=0.75):  # the table of methods, no method
        dataset = name[: -len(method) - 1]
        return f"; did you mean 'results/{dataset}_compare.md' (the table of every method)?"
    # only a method that holds an underscore can have been split inside its own name
    joined = [k for k in known if "_" in k]
    best = None  # (similarity, dataset part, method)
    for i in [i for i, c in enumerate(name) if c == "_"]:
        prefix, tail = name[:i], name[i + 1 :].lower()
        if "_" not in tail or not prefix:
            continue
        for k in joined:
            score = difflib.SequenceMatcher(None, tail, k).ratio()
            if score >= 0.75 and (best is None or score > best[0]):
                best = (score, prefix, known[k])
    return f"; did you mean '{best[1]}_{best[2]}'?" if best else ""


def _unset(value) -> bool:
    """A path setting left out: null, empty, or the text ``null`` / ``none`` / ``~`` that a nested ``--config``
    value stays as (not a file or folder of that name)."""
    if value is None:
        return True
    text = str(value).strip()
    return text == "" or (text.lower() in ("null", "none", "~") and not os.path.exists(text))


class PlanError(ValueError):
    """A configuration or a request the workflow cannot plan (rules/common.smk shows it as a WorkflowError)."""


DEEP_BACKBONES = ("dinov2", "resnet")
_WEIGHTS_SHA1: dict[tuple[str, int, int], str] = {}  # (real path, bytes, mtime ns) -> sha1, once per DAG build


def lists_root(ds: str) -> str:
    """The folder of every version of dataset ``ds``'s lists (``results/lists/{ds}``): where it exists, the dataset
    was read here before (a folder now missing was moved or renamed, said as such)."""
    return os.path.dirname(os.path.dirname(fill(LISTS, dataset=ds, ver="0" * 8)))


def earlier_root(ds: str) -> str | None:
    """The folder dataset ``ds`` was last read from in this working directory: the ``root`` of its newest
    ``lists.json`` (by mtime), read from the file's first 64 KiB (``root`` is its second key; a GLDv2 list runs to
    hundreds of MB), or None where there is none or it cannot be read. For the message of a folder not found: a run
    without the ``--config data_root=...`` of the earlier ones was told "moved or renamed?" (helper-164)."""
    listed = []
    for f in Path(lists_root(ds)).glob("*/lists.json"):
        try:
            listed.append((f.stat().st_mtime_ns, f))
        except OSError:
            continue
    for _, f in sorted(listed, reverse=True):
        try:
            with open(f, encoding="utf-8") as fh:
                head = fh.read(65536)
            at = head.index('"root":') + len('"root":')
            root, _ = json.JSONDecoder().raw_decode(head[at:].lstrip())
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(root, str) and root:
            return root
    return None


def _read_before(ds: str, d: str, moved: bool) -> str:
    """The end of the message of a folder ``d`` not found for ``ds``, whose lists were made here before: where from,
    and the setting that reads that folder again where it is still there."""
    earlier = earlier_root(ds)
    where = f" from {earlier}" if earlier else ""
    if earlier and os.path.isdir(earlier) and os.path.normpath(earlier) != os.path.normpath(os.path.abspath(d)):
        setting = (
            f"--config data_root={os.path.dirname(earlier)}"
            if os.path.basename(earlier) == ds and not moved  # dataset_dirs names it: data_root would not apply
            else f"dataset_dirs: {{{ds}: {earlier}}} in a --configfile"
        )
        return f"; it was read here before{where} (results/lists/{ds}/), which is there: {setting} reads it again"
    return (
        f"; it was read here before{where} (results/lists/{ds}/): moved or renamed? Its results are kept, and are "
        "found again if it comes back to this place"
    )


def _looked_at(path: str) -> str:
    """For a relative path not found: where it was looked for (relative paths are read from the working directory,
    not the folder of the configuration file that names them: helper-145 wrote one beside its config file)."""
    p = os.path.expanduser(path)
    if p != path:  # ~ expanded (helper-147: said nothing)
        return f" (as {p})"
    return "" if os.path.isabs(p) else f" (read from the working directory: {os.path.abspath(p)})"


def _weights_sha1(key: str, path: str) -> str:
    """The SHA-1 of a weights file (hashed once per process: about 0.4 s for DINOv2 ViT-B/14's 350 MB); PlanError
    naming ``key`` where it is not a file."""
    p = os.path.expanduser(path)
    if not path.strip():
        raise PlanError(f"{key} is empty: name a weights file, or write null (none) or random (tests)")
    if not os.path.isfile(p):
        hint = ""
        if os.path.isdir(p):
            hint = " (a folder: name the file in it)"
        elif path.strip().lower() in ("random", "none", "null"):  # a keyword in another spelling
            hint = f"; did you mean {'random' if path.strip().lower() == 'random' else 'null (no file)'}?"
        raise PlanError(f"{key}: {path} not found{hint or _looked_at(path)}")
    st = os.stat(p)
    ident = (os.path.realpath(p), st.st_size, st.st_mtime_ns)
    if ident not in _WEIGHTS_SHA1:
        _WEIGHTS_SHA1[ident] = file_sha1(p)
    return _WEIGHTS_SHA1[ident]


def _users(ds):
    """Whether canonical dataset ``ds`` is read from a folder of the user's: not a demo split (generated), a dataset
    a rule downloads (revisitop's, GLDv2's) or the R1M distractors, whose files are not the user's."""
    return not (ds in DEMO_SPLITS or ds in DOWNLOADABLE or ds in GLDV2_DOWNLOADABLE or ds == DISTRACTORS)


def ground_truth_path(d, ds):
    """:func:`retrieval.data.datasets.ground_truth_path`, its ValueError (a ``gnd_*.pkl`` of another name) a
    PlanError: shown as a WorkflowError, not an input function's traceback."""
    try:
        return _ground_truth_path(d, ds)
    except ValueError as e:
        raise PlanError(str(e)) from None


class Plan:
    """Versions, paths and provenance of every artifact under one validated configuration."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.train = config["training_split"]
        self.val = config["ames"]["validation_split"]

    def canonical(self, ds):
        return canonical(ds)

    def same_data(self, a, b):
        """Whether datasets ``a`` and ``b`` read the same images: one canonical name, or two names of one folder
        (``dataset_dirs: {lmalias: .../lm}`` beside ``lm``; a '+1m' dataset by its base's). The checks that keep
        the evaluated dataset, the training split and the validation split apart compared names only: helper-140
        evaluated its training split under another name with no word (Medium 77.86 against 74.30)."""
        a, b = self.canonical(a), self.canonical(b)
        a, b = self.distractor_base(a) or a, self.distractor_base(b) or b
        return a == b or self.shared_folder(a, b) is not None

    def shared_folder(self, a, b):
        """The folder two differently named datasets ``a`` and ``b`` both read, or None: their folder (a name in
        ``dataset_dirs``, a symbolic link), or their photos (``jpg/``, or the folder itself where it has none: a
        ``jpg/`` linked to the other's photos, which helper-144 found taken as other data)."""
        a, b = self.canonical(a), self.canonical(b)
        a, b = self.distractor_base(a) or a, self.distractor_base(b) or b
        try:
            da, db = self.dataset_dir(a), self.dataset_dir(b)
        except PlanError:  # a name dataset_dir refuses is said where it is read
            return None
        if os.path.realpath(da) == os.path.realpath(db):
            return da
        # each one's photos: its jpg/, else its root (a plain folder's photos; helper-147 linked a split's jpg/ to
        # one, and only jpg/ against jpg/ was compared)
        pa, pb = (
            os.path.realpath(os.path.join(d, "jpg") if os.path.isdir(os.path.join(d, "jpg")) else d) for d in (da, db)
        )
        return pa if pa == pb else None

    def distractor_base(self, ds):
        """The dataset under '{dataset}+1m' (its queries and ground truth, its database first), or None."""
        ds = self.canonical(ds)
        if not ds.endswith(PLUS):
            return None
        base = ds[: -len(PLUS)]
        if base == DISTRACTORS or base.endswith(PLUS):
            raise PlanError(
                f"dataset '{ds}': '{PLUS}' appends the {DISTRACTORS} distractors to another dataset, "
                f"e.g. roxford5k{PLUS}"
            )
        return base

    def v_demo(self):
        return stable_hash({"generator": GENERATOR_VERSION, "demo": self.config["demo"]})

    def dataset_dir(self, ds):
        ds = self.canonical(ds)
        base = self.distractor_base(ds)
        if base is not None:
            return f"{self.dataset_dir(base)} + {self.dataset_dir(DISTRACTORS)}"
        if ds in DEMO_SPLITS:
            if any(canonical(k) == ds for k in self.config.get("dataset_dirs") or {}):
                raise PlanError(f"dataset_dirs.{ds}: the demo splits are generated under results/, not read")
            return f"{fill(DEMO_DATA, ver=self.v_demo())}/{ds}"
        own = {canonical(k): v for k, v in (self.config.get("dataset_dirs") or {}).items()}.get(ds)
        # absolute and normal: `data_root=../data` and `/abs/data`, or a trailing slash in dataset_dirs, name one
        # folder, and as two spellings they were changed params and inputs that re-ran every job in place
        return os.path.abspath(os.path.expanduser(own) if own else os.path.join(self.config["data_root"], ds))

    def v_lists(self, ds):
        ds = self.canonical(ds)
        base = self.distractor_base(ds)
        if base is not None:
            return stable_hash({"dataset": ds, "base": self.v_lists(base), "distractors": self.v_lists(DISTRACTORS)})
        # the real path: one folder reached through two links (a data_root under a linked directory) has one version,
        # and a link re-pointed at another folder gives a new one beside the earlier folder's
        source = self.v_demo() if ds in DEMO_SPLITS else os.path.realpath(self.dataset_dir(ds))
        skip = (
            {"on_bad_image": "skip"} if self.config["on_bad_image"] == "skip" else {}
        )  # default: earlier versions hold
        decoder = {"decoder": DECODER_VERSION, "max_image_pixels": self.config["max_image_pixels"]}
        # a scanned folder lists the files whose suffix is an image format read here (the set grew with HEIC)
        scanned = {"image_suffixes": list(IMAGE_SUFFIXES)} if self.scans_folder(ds) else {}
        return stable_hash(
            {
                "dataset": ds,
                "source": source,
                "crop_queries": self.config["crop_queries"],
                **skip,
                **decoder,
                **scanned,
                **self._gldv2_lists(ds),
                **self._folder_state(ds),
            }
        )

    def _folder_ground_truth(self, ds):
        """The ground-truth file of a dataset in a folder of the user's, or None (a plain folder; the demo splits,
        the datasets a rule downloads and R1M, whose files are not the user's). Raises PlanError as
        ``ground_truth_path``."""
        if not _users(ds):
            return None
        d = self.dataset_dir(ds)
        return ground_truth_path(d, ds) if os.path.isdir(d) else None

    def _folder_state(self, ds):
        """What of a user's folder its lists' version holds beyond its path: ``{"ground_truth": <file name>}`` for a
        folder with a ground-truth file (gnd.json, the pickle, gnd.csv, ...), ``{"folder": "missing"}`` for one that
        is not there, else nothing (the demo splits, the datasets a rule downloads and R1M: their files are not the
        user's). The file's contents are not hashed: an edited gnd.csv leaves the database side alone.

        Without the name, a ground truth renamed or removed gave the folder the same version, and its evaluations were
        written again, without metrics, over the ones with: a gnd.csv (helper-134), and a gnd.json beside
        image_list.txt (2026-12-07). Without the missing mark, a folder moved away had the version of the same folder
        without its ground truth, and where that version had been evaluated (a rename and back) its published
        results were replaced by those without metrics, exit status 0 (helper-138); a moved folder's version is now
        one no run has made, so whatever needs its lists stops on the error naming the folder."""
        if self.folder_missing(ds):
            return {"folder": "missing"}
        try:
            gt = self._folder_ground_truth(ds)
        except PlanError:  # a pickle of another name: said where the folder's files are read (folder_source)
            return {}
        return {"ground_truth": gt.name} if gt is not None else {}

    def folder_missing(self, ds):
        """Whether ``ds`` (for ``{dataset}+1m``, its base) is a user's folder that is not there: False for the demo
        splits, the datasets a rule downloads and R1M, whose folders are not the user's. Raises PlanError for a
        malformed ``+1m`` name."""
        ds = self.canonical(ds)
        base = self.distractor_base(ds)
        if base is not None:
            return self.folder_missing(base)
        return _users(ds) and not os.path.isdir(self.dataset_dir(ds))

    def _gldv2_lists(self, ds):
        """gldv2_identity for a dataset in GLDv2's format (gldv2, gldv2-train, a folder with its CSV files); nothing
        for any other, whose lists the gldv2 keys do not change (gldv2.present_only moved the demo's versions)."""
        identity = self.gldv2_identity()
        if not identity or ds in GLDV2_DOWNLOADABLE:
            return identity
        gt = self._folder_ground_truth(ds)
        return identity if gt is not None and gt.name in (GLDV2_SOLUTION, *GLDV2_TRAIN_LISTS) else {}

    def database_apart(self, ds):
        """Whether the dataset's database is listed by its own rule (``database_list``, ``db.json``), apart from its
        queries and ground truth: a plain folder or a gnd.csv dataset (its database is image_list.txt or the scanned
        folder). Editing gnd.csv, query_boxes.csv or query_list.txt then leaves the database side as it is."""
        ds = self.canonical(ds)
        if not _users(ds) or self.distractor_base(ds) is not None:
            return False
        d = self.dataset_dir(ds)
        return os.path.isdir(d) and database_apart(Path(d), ground_truth_path(d, ds))

    def scans_folder(self, ds):
        """Whether the dataset's database is a scan of its folder (a plain folder, or gnd.csv, without
        image_list.txt), so which files count as images decides its lists. Not for the demo splits or datasets that
        a rule downloads (their lists come from their own files)."""
        ds = self.canonical(ds)
        if ds in DEMO_SPLITS or ds in DOWNLOADABLE or ds in GLDV2_DOWNLOADABLE:
            return False
        d = self.dataset_dir(ds)
        if not os.path.isdir(d) or os.path.isfile(os.path.join(d, "image_list.txt")):
            return False
        gt = ground_truth_path(d, ds)
        return gt is None or os.path.basename(gt) == "gnd.csv"

    def gldv2_identity(self):
        """What in the gldv2 configuration changes a dataset's lists (nothing at the defaults: earlier versions hold)."""
        g = self.config["gldv2"]
        out = {
            k: g[k]
            for k in ("present_only", "train_list")
            if g[k] != {"present_only": False, "train_list": "train_clean.csv"}[k]
        }
        if g["exclude_landmarks"]:
            if not os.path.isfile(g["exclude_landmarks"]):
                raise PlanError(f"gldv2.exclude_landmarks: {g['exclude_landmarks']} not found")
            out["exclude_landmarks"] = self._file_identity(g["exclude_landmarks"])
        return out

    @staticmethod
    def backbone_identity(backbone, backbone_config):
        """A backbone's configuration as its extraction versions hash it: with the extractor's own version where
        ``versions.BACKBONE_VERSIONS`` has one (the others' hashes are unchanged by it); for a deep backbone, its
        ``checkpoint`` and ``detector`` files by their content (weights saved over the same path are new features;
        the same file moved or copied is not), and not its ``device`` (where it runs, as ``ames.device``).
        PlanError naming the key for a weights file that is not there."""
        cfg = dict(backbone_config)
        if backbone in DEEP_BACKBONES:
            cfg.pop("device", None)
            for key in ("checkpoint", "detector"):
                if isinstance(cfg.get(key), str) and cfg[key] != "random":
                    cfg[key] = {"sha1": _weights_sha1(f"extract.{backbone}.{key}", cfg[key])}
        code = BACKBONE_VERSIONS.get(backbone)
        return cfg if code is None else {**cfg, "extractor_version": code}

    def extract_config(self, backbone=None):
        cfg = self.config["extract"]
        backbone = backbone or cfg["backbone"]
        return {
            "backbone": backbone,
            "n_chunks": cfg["n_chunks"],
            backbone: self.backbone_identity(backbone, cfg[backbone]),
        }

    def v_local(self, ds, backbone=None):
        """Local descriptors of ``backbone`` (default: extract.backbone, the one sv and AMES read)."""
        return stable_hash({"lists": self.v_lists(ds), "extract": self.extract_config(backbone)})

    def v_extract(self, ds, backbone, backbone_config):
        return stable_hash(
            {
                "lists": self.v_lists(ds),
                "extract": {
                    "backbone": backbone,
                    "n_chunks": self.config["extract"]["n_chunks"],
                    backbone: self.backbone_identity(backbone, backbone_config),
                },
            }
        )

    def v_ssp_local(self, ds):
        """The light query model's local features (SSP): sift with ssp.query_sift."""
        return self.v_extract(ds, "sift", self.config["ssp"]["query_sift"])

    def shortlist_backbone(self):
        """The backbone whose global descriptors make the shortlist (shortlist.source: backbone), else None."""
        sl = self.config["shortlist"]
        if sl["source"] != "backbone":
            return None
        b = sl["backbone"] or self.config["extract"]["backbone"]
        if b in ("sift", "ames_import"):
            raise PlanError(
                "shortlist.source: backbone needs a deep backbone (shortlist.backbone or extract.backbone: "
                f"dinov2 | resnet); {b} has no global descriptor, use shortlist.source: vlad"
            )
        return b

    def queries_may_share_db(self, ds):
        """Whether the queries of a dataset can be uncropped database images (then a query chunk copies their database
        rows instead of extracting them again): a folder without ground truth (no boxes), or crop_queries: false."""
        if not self.config["crop_queries"]:
            return True
        ds = self.canonical(ds)
        if self.distractor_base(ds) is not None or ds in DEMO_SPLITS or ds in DOWNLOADABLE or ds == DISTRACTORS:
            return False
        return ground_truth_path(self.dataset_dir(ds), ds) is None

    def fit_split(self, ds):
        """The dataset whose database images, without labels, fit the VLAD codebook and PCA-whitening used for ``ds``
        (unsupervised_fit: self, training, cross or a dataset name). '{dataset}+1m' uses its base dataset's."""
        mode = self.config["unsupervised_fit"]
        ds = self.canonical(ds)
        ds = self.distractor_base(ds) or ds
        if mode == "self":
            return ds
        if mode == "training":
            return self.canonical(self.train)
        if mode == "cross":
            return CROSS.get(ds, self.canonical(self.train))
        return self.named_fit_split()

    def named_fit_split(self):
        """The dataset an ``unsupervised_fit`` other than self, training or cross names, canonical; PlanError naming
        the key (with a near spelling) where it is neither a demo split, a downloadable dataset nor a folder."""
        mode = self.config["unsupervised_fit"]
        named = self.canonical(mode)
        known = named in DEMO_SPLITS or named in DOWNLOADABLE or named in GLDV2_DOWNLOADABLE
        if not known and not os.path.isdir(self.dataset_dir(named)):
            root = self.config["data_root"]
            named_dirs = list(self.config.get("dataset_dirs") or {})
            moved = any(canonical(k) == named for k in named_dirs)
            folders = sorted(e.name for e in os.scandir(root) if e.is_dir()) if os.path.isdir(root) else []
            near = difflib.get_close_matches(str(mode).lower(), ["self", "training", "cross"], n=1)
            # a dataset_dirs name is offered only where its folder exists, and never the name given (helper-95: "no
            # dataset folder ... (dataset_dirs.gone); did you mean 'gone'?")
            placed = [k for k in named_dirs if canonical(k) not in (named, *DEMO_SPLITS) and self._placed_dir(k)]
            candidates = folders + placed + list(DEMO_SPLITS) + list(DOWNLOADABLE)
            near = near or difflib.get_close_matches(str(mode), candidates, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise PlanError(
                f"unsupervised_fit: {mode!r} is not self, training or cross, and no dataset folder "
                f"{self.dataset_dir(named)} exists ("
                + (f"dataset_dirs.{named}" if moved else f"data_root={self.config['data_root']}")
                + f"){hint}"
            )
        return named

    def _placed_dir(self, name) -> bool:
        """Whether ``dataset_dirs.{name}`` names an existing folder (False for a name that cannot be planned, such as
        'revisitop1m+1m', which the schema or another check names)."""
        try:
            return os.path.isdir(self.dataset_dir(name))
        except PlanError:
            return False

    def config_problems(self) -> list[str]:
        """The configuration's problems that the schema cannot see, one line each, all of them (empty: none): a demo
        split named in ``dataset_dirs``, a ResNet backbone without ``extract.resnet.checkpoint``,
        ``extract.min_chunk_images`` above ``extract.max_chunk_images`` (or ``ssp.anchors``' max points per centroid
        below its min), an ``unsupervised_fit`` that names no
        dataset, ``shortlist.source: backbone`` without a deep backbone, ``shortlist.source`` import or ames_nn
        without ``shortlist.import_dir``, ``extract.backbone: ames_import`` without ``extract.ames_import.dir``, and
        ``benchmark.extract.backbone: resnet`` without ``benchmark.extract.resnet``.
        A method that ``compare.methods`` or ``report.methods`` lists under its old and its new name.
        Checked once, before any job (each failed later, or was ignored where results were up to date). Problems
        that concern some targets only (AMES's shortlist against ``sv.num_rerank``) are said when those are planned."""
        cfg, problems = self.config, []
        for key in ("compare", "report"):  # a method under its old and new name: one row, folded in silence
            methods = cfg[key]["methods"]
            for m in dict.fromkeys(m for m in methods if m in DEPRECATED_METHODS):
                if DEPRECATED_METHODS[m] in methods:
                    problems.append(
                        f"{key}.methods: '{m}' is '{DEPRECATED_METHODS[m]}' (its old name), which the list names "
                        "already: list each method once"
                    )
        for name in cfg.get("dataset_dirs") or {}:
            if canonical(name) in DEMO_SPLITS:
                problems.append(f"dataset_dirs.{name}: the demo splits are generated under results/, not read")
        deep = {cfg["extract"]["backbone"]}
        if cfg["shortlist"]["source"] == "backbone":
            deep.add(cfg["shortlist"]["backbone"] or cfg["extract"]["backbone"])
        if "resnet" in deep and _unset(cfg["extract"]["resnet"]["checkpoint"]):
            chose = "extract.backbone" if cfg["extract"]["backbone"] == "resnet" else "shortlist.backbone"
            problems.append(  # led by the key the user set, so that its file is named (name_holders)
                f"{chose}: resnet needs extract.resnet.checkpoint, a torchvision or CVNet state-dict file, e.g. "
                "CVPR2022_CVNet_R101.pt (or 'random' for tests)"
            )
        low, high = cfg["extract"]["min_chunk_images"], cfg["extract"]["max_chunk_images"]
        if low > high:
            problems.append(
                f"extract.min_chunk_images ({low}) is above extract.max_chunk_images ({high}): a pack cannot hold at "
                "least the one and at most the other"
            )
        anchors = cfg["ssp"]["anchors"]
        if anchors["max_points_per_centroid"] < anchors["min_points_per_centroid"]:  # SSP's job failed on it
            problems.append(
                f"ssp.anchors.max_points_per_centroid ({anchors['max_points_per_centroid']}) is below "
                f"ssp.anchors.min_points_per_centroid ({anchors['min_points_per_centroid']}): k-means would sample "
                "fewer vectors per codeword than the split is required to have"
            )
        if cfg["unsupervised_fit"] not in ("self", "training", "cross"):
            try:  # the name alone: a training_split the fit does not read was said in its place (helper-92's trial)
                self.named_fit_split()
            except PlanError as e:
                problems.append(str(e))
        # the shortlist and the local features every method starts from: a source or backbone without what it reads
        # (each came alone, in Snakemake's InputFunctionException frame, once a job that needs it was planned)
        try:
            self.shortlist_backbone()
        except PlanError as e:
            problems.append(str(e))
        source = cfg["shortlist"]["source"]
        if source in ("import", "ames_nn") and _unset(cfg["shortlist"]["import_dir"]):
            held = "{dataset}/" + cfg["shortlist"]["nn_file"]
            if source == "import":
                held = "{dataset}/db.npy and query.npy, .h5 or .hdf5, or {dataset}/{dataset}.mat"
            problems.append(f"shortlist.source: {source} needs shortlist.import_dir (the folder holding {held})")
        if cfg["extract"]["backbone"] == "ames_import" and _unset(cfg["extract"]["ames_import"]["dir"]):
            problems.append(
                "extract.backbone: ames_import needs extract.ames_import.dir (the AMES release folder "
                "holding {dataset}/{desc}_gallery_local.hdf5 and {desc}_query_local.hdf5)"
            )
        timed = cfg.get("benchmark", {}).get("extract", {})
        if timed.get("backbone") == "resnet" and not timed.get("resnet"):  # the job failed with KeyError: 'resnet'
            problems.append(
                "benchmark.extract.backbone: resnet needs benchmark.extract.resnet, its settings (keys as "
                "extract.resnet, e.g. {checkpoint: random, model: {depth: 50}})"
            )
        return problems

    def lw_space(self):
        """Lw is learned on the training split's global descriptors, so it is applied in that split's space."""
        return self.fit_split(self.train)

    def v_codebook(self, space):
        return stable_hash({"local": self.v_local(space), "codebook": self.config["codebook"]})

    def codebook_path(self, space):
        return fill(CODEBOOK, dataset=space, ver=self.v_codebook(space))

    def v_vlad(self, ds, space=None):
        return stable_hash(
            {
                "local": self.v_local(ds),
                "codebook": self.v_codebook(space or self.fit_split(ds)),
                "aggregate": self.config["aggregate"],
            }
        )

    def scale_benchmark_config(self):
        """``benchmark.scale``, checked while the DAG is built (rule benchmark_scale's params): ``k`` within [1,
        ``n_db``] and IVF-PQ settings that train on ``n_db`` vectors (``plan_ivfpq`` without the dimension, which the
        job checks). The job refused them too, but only after the extraction, the binary AMES model and its store.
        PlanError naming the key."""
        cfg = self.config["benchmark"]["scale"]
        n, k = int(cfg["n_db"]), int(cfg["k"])
        if not 1 <= k <= n:
            raise PlanError(f"benchmark.scale.k: {k} neighbours asked of a database of {n} (benchmark.scale.n_db)")
        try:
            plan = plan_ivfpq(n, None, cfg["ivfpq"], "benchmark.scale.ivfpq")
        except ValueError as e:
            raise PlanError(str(e)) from None
        if "fallback" in plan:
            raise PlanError(f"benchmark.scale.ivfpq: {plan['fallback']}; give explicit nlist and train")
        return cfg

    def whiten_identity(self):
        w = self.config["whiten"]
        return {"dim": w["dim"], "min_images_per_dim": w["min_images_per_dim"], "max_images": w["max_images"]}

    def v_whiten(self, space):
        return stable_hash({"vlad": self.v_vlad(space, space), "whiten": self.whiten_identity(), "fit": FIT_VERSION})

    def whiten_path(self, space):
        return fill(WHITEN, dataset=space, ver=self.v_whiten(space))

    def import_file(self, ds, side):
        """shortlist.source import: the user's file with the global descriptors of one side (``db`` or ``query``)."""
        if not self.config["shortlist"]["import_dir"]:
            raise PlanError("shortlist.source: import needs shortlist.import_dir")
        try:
            return str(find_import(self.config["shortlist"]["import_dir"], self.canonical(ds), side))
        except FileNotFoundError as e:
            raise PlanError(str(e)) from e

    def nn_import_file(self, ds):
        """shortlist.source ames_nn: the AMES shortlist file {import_dir}/{dataset}/{nn_file} (a declared input)."""
        sl = self.config["shortlist"]
        if not sl["import_dir"]:
            raise PlanError(
                f"shortlist.source: ames_nn needs shortlist.import_dir (the folder holding {{dataset}}/{sl['nn_file']})"
            )
        p = nn_file(sl["import_dir"], self.canonical(ds), sl["nn_file"])
        if not p.is_file():
            why = ""
            if self.canonical(ds) == self.canonical(self.train):
                why = (
                    f"; {ds} is training_split, whose shortlist AMES trains on: set ames.checkpoint.ames (and "
                    f".ames_binary) to trained models, or give {ds}'s release files (results/export/ames/{ds}, run "
                    "under shortlist.source vlad or backbone, writes them as nn_{backbone}.pkl: name it in "
                    "shortlist.nn_file)"
                )
            elif self.canonical(ds) == self.canonical(self.val):
                why = (
                    f"; {ds} is ames.validation_split, whose shortlist chooses the fusion point: give its release "
                    f"files (results/export/ames/{ds}, run under shortlist.source vlad or backbone, writes them as "
                    "nn_{backbone}.pkl), or set ames.select: fixed (the point ames.fixed)"
                )
            raise PlanError(f"shortlist.source: ames_nn: {p} not found (shortlist.nn_file names it){why}")
        return str(p)

    def _file_identity(self, p):
        return [os.path.realpath(p), os.path.getsize(p), os.path.getmtime(p)]

    def v_global(self, ds, space=None):
        if self.config["shortlist"]["source"] == "ames_nn":
            return stable_hash({"lists": self.v_lists(ds), "nn": self._file_identity(self.nn_import_file(ds))})
        b = self.shortlist_backbone()
        if b is not None:
            return stable_hash({"local": self.v_local(ds, b), "shortlist": "backbone"})
        if self.config["shortlist"]["source"] == "import":
            files = {
                s: self.import_file(ds, s)
                for s in ("db", "query")
                if s == "db" or self.canonical(ds) != self.canonical(self.train)
            }
            stat = {s: self._file_identity(p) for s, p in files.items()}
            return stable_hash({"lists": self.v_lists(ds), "import": stat})
        space = space or self.fit_split(ds)
        return stable_hash(
            {"vlad": self.v_vlad(ds, space), "whiten": self.v_whiten(space), "power": self.config["whiten"]["power"]}
        )

    def global_path(self, ds, side, space=None):
        """The global descriptors of one side (``db`` or ``query``) of a dataset: VLAD + PCA-whitening, the shortlist backbone's own, or imported."""
        if self.config["shortlist"]["source"] == "ames_nn":
            raise PlanError(
                f"{ds}: this needs global descriptors, but shortlist.source: ames_nn imports only a shortlist; "
                "global, sv, asmk, ames and ames_binary (with ames.checkpoint set) work from it; aqe, adba, "
                "superglobal, lw, ssp and AMES training need shortlist.source vlad, backbone or import"
            )
        if self.shortlist_backbone() is not None:
            return fill(GLOBAL_BACKBONE, dataset=ds, ver=self.v_global(ds), side=side)
        if self.config["shortlist"]["source"] == "import":
            return fill(GLOBAL_IMPORT, dataset=ds, ver=self.v_global(ds), side=side)
        space = space or self.fit_split(ds)
        return fill(GLOBAL, dataset=ds, space=space, ver=self.v_global(ds, space), side=side)

    def knn_identity(self):
        """What in knn's configuration changes its result: k, and for compressed search its settings (block is only
        how the exact search streams)."""
        kc = self.config["knn"]
        if kc["search"] == "exact":
            return {"k": kc["k"]}
        return {"k": kc["k"], "search": kc["search"], "ivfpq": kc["ivfpq"]}

    def v_knn(self, ds):
        if self.config["shortlist"]["source"] == "asmk":
            return stable_hash({"asmk": self.v_asmk_search(ds)})
        return stable_hash({"global": self.v_global(ds), "knn": self.knn_identity()})

    def evaluate_settings(self):
        """The ``evaluate`` section as the evaluations' versions hash it: ``ks`` and ``csv_top``. ``bootstrap`` is
        hashed on its own by the evaluations with a baseline (``evaluate_global`` draws none), as it was when it
        lived at ``ames.bootstrap``, so its move left every version as it was."""
        return {k: v for k, v in self.config["evaluate"].items() if k != "bootstrap"}

    def v_eval(self, ds):
        return stable_hash({"knn": self.v_knn(ds), "lists": self.v_lists(ds), "evaluate": self.evaluate_settings()})

    def demo_version(self, *splits):
        """``v_demo()`` when one of ``splits`` is a demo split (its images are generated), else None."""
        return self.v_demo() if any(self.canonical(s) in DEMO_SPLITS for s in splits) else None

    def versions(self, ds):
        """The results JSON's ``versions``: every artifact behind ``ds``'s global ranking, first stage to evaluation.

        Only what the evaluation's own version covers: these are its jobs' params, and a value that changes while
        the version does not re-ran the job in place (the demo's version in a landmarks-mini evaluation when a
        ``demo.*`` key changed). ``demo_data`` is set when the dataset or its fit split is generated."""
        b = self.shortlist_backbone()
        source = self.config["shortlist"]["source"]
        vlad_or_asmk = b is None and source not in ("import", "ames_nn")
        out = {
            "demo_data": self.demo_version(ds, *([self.fit_split(ds)] if vlad_or_asmk else [])),
            "image_lists": self.v_lists(ds),
            **(self.local_versions(ds) if self.ranked_by_local() else {}),
        }
        if source == "asmk":
            out.update(
                {
                    "asmk_codebook": self.v_asmk_codebook(self.fit_split(ds)),
                    "asmk_ivf": self.v_asmk_ivf(ds),
                    "asmk_search": self.v_asmk_search(ds),
                }
            )
        elif b is not None or source in ("import", "ames_nn"):
            out.update({"extract_shortlist": self.v_local(ds, b) if b else None, "global": self.v_global(ds)})
        else:
            fit = self.fit_split(ds)
            out.update(
                {
                    "extract_fit": self.v_local(fit),
                    "codebook": self.v_codebook(fit),
                    "aggregate": self.v_vlad(ds),
                    "whiten": self.v_whiten(fit),
                    "global": self.v_global(ds),
                }
            )
        return {**out, "knn": self.v_knn(ds), "evaluate": self.v_eval(ds)}

    def export_desc(self):
        """The descriptor name in exported AMES file names: the backbone's (or the imported release's)."""
        b = self.config["extract"]["backbone"]
        return self.config["extract"]["ames_import"]["desc"] if b == "ames_import" else b

    def lists_dir(self, ds):
        return self.lists_json(ds).rpartition("/")[0]

    def lists_json(self, ds):
        return fill(LISTS, dataset=ds, ver=self.v_lists(ds))

    def database_json(self, ds):
        return fill(DB_LIST, dataset=ds, ver=self.v_lists(ds))

    def side_lists_json(self, ds, side):
        """The lists a stage of one side reads: the database list where it is listed apart (so a ground-truth edit
        does not reach the database side), else the dataset's lists. A PlanError naming the folder where a dataset of
        the user's has none (it is moved away): a collection searched only has no lists.json, and asking for it ran
        the search again with every thumbnail crossed out (helper-133)."""
        if side == "db" and self.database_apart(ds):
            return self.database_json(ds)
        if side == "db" and self.folder_missing(ds):  # for 'coll+1m', coll's folder (helper-134)
            c = self.canonical(ds)
            self.folder_source(self.distractor_base(c) or c)  # raises, naming the folder
        return self.lists_json(ds)

    def gnd_json(self, ds):
        return fill(GND, dataset=ds, ver=self.v_lists(ds))

    def local_store(self, ds, side, ver=None):
        """The merged local descriptors of one side (``db`` or ``query``): extract.backbone's, or those of version ``ver`` (another extraction)."""
        return fill(LOCAL, dataset=ds, ver=ver or self.v_local(ds), side=side)

    def descriptor_sweep_store(self, ds):
        """The database's local store the descriptor sweep (``benchmark.descriptors``) reads. PlanError, while the
        DAG is built, when a count there is above what extraction keeps per image (``extract.{backbone}.k``): the
        sweep's own job refused it only after every job before it (demo, extraction, AMES training) had run. A
        store narrower than k (an import whose files hold fewer) is still refused by that job."""
        backbone = self.config["extract"]["backbone"]
        k = int(self.config["extract"][backbone]["k"])
        for key, counts in self.config["benchmark"]["descriptors"].items():
            above = [int(c) for c in counts if c > k]
            if above:
                raise PlanError(
                    f"benchmark.descriptors.{key}: {above} descriptors per image asked, but extraction keeps at most "
                    f"{k} (extract.{backbone}.k): ask at most {k}, or raise extract.{backbone}.k"
                )
        return self.local_store(ds, "db")

    def chunk_paths(self, ds, ver, side):
        return [fill(CHUNK, dataset=ds, ver=ver, side=side, chunk=c) for c in range(self.config["extract"]["n_chunks"])]

    def extraction_benchmarks(self, ds):
        """The benchmark files of a dataset's own extraction chunks (both sides, extract.backbone), for the report;
        none where the chunks are not its own: feature-cache packs (shared by every folder dataset, extracted
        whenever a photo is first seen) and '{dataset}+1m' (the dataset's and the distractors' chunks)."""
        if self.distractor_base(ds) is not None or self.uses_feature_cache(ds, self.config["extract"]["backbone"]):
            return []
        ver = self.v_local(ds)
        n = self.config["extract"]["n_chunks"]
        return [fill(BENCH_EXTRACT, dataset=ds, ver=ver, side=s, chunk=c) for s in ("db", "query") for c in range(n)]

    def knn_path(self, ds):
        return fill(KNN, dataset=ds, ver=self.v_knn(ds))

    def baseline_path(self, ds):
        """The global shortlist's evaluation, the baseline every re-ranking is compared with."""
        return fill(EVAL, dataset=ds, ver=self.v_eval(ds), method="global")

    def vlad_path(self, ds, space, side):
        return fill(VLAD, dataset=ds, space=space, ver=self.v_vlad(ds, space), side=side)

    def log_path(self, stage, suffix=""):
        return f"logs/{stage}/{{dataset}}/{{ver}}{suffix}.log"

    def folder_source(self, ds, searched=False, not_offered=()):
        """The files a folder dataset's lists depend on (its ground truth, a download marker, or its image folder);
        a PlanError naming the folder, the key that placed it and the nearest names where it is missing or a file.
        ``searched``: the dataset is photos to search, so a missing folder is not told about ground truth;
        ``not_offered``: names never offered as the nearest (the collection a misspelt photos folder is searched
        against)."""
        d = self.dataset_dir(ds)
        if searched and self.canonical(ds) in (self.canonical(self.train), self.canonical(self.val)):
            searched = False  # photos that are also a training or validation split need their ground truth
        gt = ground_truth_path(d, ds)
        moved = d != os.path.abspath(os.path.join(self.config["data_root"], ds))  # named in dataset_dirs
        listed_r1m = ds == DISTRACTORS and os.path.isfile(os.path.join(d, f"{DISTRACTORS}.txt"))
        if gt is None and moved and not listed_r1m and (ds in DOWNLOADABLE or ds in GLDV2_DOWNLOADABLE):
            raise PlanError(
                f"dataset_dirs.{ds}: {d} holds no ground truth, and downloads go to data_root "
                f"({self.config['data_root']}): point it at a downloaded copy, or leave {ds} out of dataset_dirs"
            )
        if ds in GLDV2_DOWNLOADABLE and (gt is None or os.path.isdir(os.path.join(d, "_download"))):
            return [os.path.join(d, ".download_complete")]  # absent or begun by the download rule: let it finish
        if gt is not None and os.path.basename(gt) != "gnd.csv":
            return [str(gt)]
        if gt is None and ds == DISTRACTORS and os.path.isfile(os.path.join(d, f"{DISTRACTORS}.txt")):
            return [os.path.join(d, f"{DISTRACTORS}.txt")]
        if gt is None and ds in DOWNLOADABLE:
            return [os.path.join(d, ".download_complete")]
        if moved and os.path.exists(d) and not os.path.isdir(d):
            raise PlanError(f"dataset_dirs.{ds}: {d} is a file; name the folder that holds the images (or its jpg/)")
        root = self.config["data_root"]
        if not moved and os.path.exists(root) and not os.path.isdir(root):  # said as missing before (a user's trial)
            raise PlanError(f"data_root: {root} is a file, not a folder; name the folder that holds {ds}/")
        if not moved and os.path.exists(d) and not os.path.isdir(d):
            what = "photos to search" if searched else "dataset"
            raise PlanError(f"{what} '{ds}': {d} is a file, not a folder; put the images in a folder {d}/jpg/")
        if not os.path.isdir(d) and not moved and os.path.isdir(os.path.join(root, "jpg")):
            # data_root named a dataset's own folder: the generic advice nested the photos one level deeper (helper-154)
            parent = os.path.dirname(os.path.normpath(root)) or "."
            own = os.path.basename(os.path.normpath(os.path.abspath(root)))
            raise PlanError(
                f"dataset '{ds}': folder {d} not found: data_root={root} is itself a dataset's folder (it holds jpg/); "
                f"data_root is the folder above the datasets: --config data_root={parent}"
                + ("" if own == ds else f" (that folder's dataset is then '{own}')")
            )
        if not os.path.isdir(d):
            known = [n for n in (*DEMO_SPLITS, *DOWNLOADABLE, *GLDV2_DOWNLOADABLE) if n != ds]
            folders = sorted(e.name for e in os.scandir(root) if e.is_dir()) if os.path.isdir(root) else []
            plus_folder = not moved and os.path.isdir(os.path.join(root, ds + PLUS))  # said below, not offered
            # a name ending in +1m is read as another dataset with the distractors: never offered (helper-100, 101)
            offered = [f for f in folders + known if not f.lower().endswith(PLUS) and f not in not_offered]
            # listed here before: the folder moved or was renamed, and another dataset's name is no hint (helper-138
            # was offered 'ilg' for a moved 'il': taking it would evaluate another collection)
            before = os.path.isdir(lists_root(ds))
            near = (
                []
                if moved or before
                # the name in another case first: difflib scores 'CSVDS' against 'csvds' 0 (helper-118)
                else [f for f in offered if f.lower() == ds.lower()] or difflib.get_close_matches(ds, offered, n=2)
            )
            # the key naming the dataset, or a '+1m' dataset over it (helper-144: training_split=lm+1m, lm missing)
            role = {}
            for key, name in (
                ("training_split", self.train),
                ("ames.validation_split", self.val),
                ("ssp.anchors.split", self.config["ssp"]["anchors"]["split"]),
            ):
                if name:
                    c = self.canonical(name)
                    role.setdefault(c, key)
                    role.setdefault(self.distractor_base(c) or c, key)
            raise PlanError(
                (f"{role[ds]}: " if ds in role else "")
                + ("photos to search" if searched else "dataset")
                + f" '{ds}': folder {d} not found ("
                # a link whose folder moved: its target named (it read as if nothing were there, helper-133)
                + (f"a symbolic link to {os.readlink(d)}, which does not exist; " if os.path.islink(d) else "")
                + (f"dataset_dirs.{ds}" if moved else f"data_root={self.config['data_root']}")
                # a mistyped data_root is the cause, not the dataset's folder (a new user's trial: 'dta' for 'data')
                + ("" if moved or os.path.isdir(root) else f", and data_root {root} does not exist at all")
                # photos to search need no ground truth (a new user's trial was told of gnd files for metrics)
                + (
                    "); point the link at the folder that holds them"  # its jpg/ cannot be made while it dangles
                    if os.path.islink(d)
                    else f"); put the photos in {d}/jpg/ (no ground truth needed)"
                    if searched
                    else f"); put the images in {d}/jpg/ (with gnd.csv, gnd.json or gnd_{ds}.pkl for metrics)"
                )
                + (
                    ", or correct the folder named in dataset_dirs"
                    if moved
                    else ", or set --config data_root=DIR, or name the folder in dataset_dirs"
                )
                + (f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else "")
                + (_read_before(ds, d, moved) if before else "")
                # a folder named 'x+1m' is not that dataset: the suffix appends the distractors to 'x' (helper-98)
                + (
                    f"; '{ds}{PLUS}' is read as '{ds}' with the {DISTRACTORS} distractors appended, so the folder "
                    f"{os.path.join(root, ds + PLUS)} is not read: rename it without '{PLUS}'"
                    if plus_folder
                    else ""
                )
            )
        # gnd.csv (with its boxes and database list) or a plain folder (its lists); where the database is a scan of
        # the folder, every folder below it too: adding or removing an image changes the mtime of the folder holding it
        lists = ("query_boxes.csv", "image_list.txt") if gt is not None else ("image_list.txt", "query_list.txt")
        listed = [os.path.join(d, f) for f in lists if os.path.isfile(os.path.join(d, f))]
        scanned = [str(p) for p in image_folders(Path(d))] if self.scans_folder(ds) else []
        return ([str(gt)] if gt is not None else []) + listed + scanned

    def database_source(self, ds):
        """What a database listed apart depends on: image_list.txt, else the scanned folders."""
        d = self.dataset_dir(ds)
        listed = os.path.join(d, "image_list.txt")
        return [listed] if os.path.isfile(listed) else [str(p) for p in image_folders(Path(d))]

    def query_source(self, ds):
        """What the queries and ground truth of a dataset whose database is listed apart depend on besides the
        database list: gnd.csv and query_boxes.csv, or query_list.txt (none for a plain folder without one)."""
        db = set(self.database_source(ds))
        return [p for p in self.folder_source(ds) if p not in db]

    def check_ground_truth(self, ds, what, labels=False):
        """PlanError for a folder dataset without ground truth, which ``what`` (a target needing metrics; with
        ``labels``, a split whose labels something is fitted on) cannot use: with ``labels``, also one whose ground
        truth holds no labels (the demo's evaluated splits, revisitop's and GLDv2's retrieval ground truth, gnd.csv,
        INSTRE's .mat, a gnd.json without ``labels``); demo-train and gldv2-train hold them."""
        c = self.distractor_base(self.canonical(ds)) or self.canonical(ds)
        if labels and c in ("demo-train", "gldv2-train"):
            return
        generated = c in DEMO_SPLITS or c in DOWNLOADABLE or c in GLDV2_DOWNLOADABLE
        if generated and not labels:
            return
        d = self.dataset_dir(c)
        gpath = ground_truth_path(d, c) if os.path.isdir(d) and c not in DEMO_SPLITS else None
        # a download's ground truth (revisitop's pickles, GLDv2's retrieval solution) holds no labels, on disk or not;
        # a labelled gnd.json put in its folder is read (it failed in lw_fit or train_ames, after extraction, the
        # codebook and the whitening: helper-118, helper-120)
        labelled = gpath is not None and (gpath.name in GLDV2_TRAIN_LISTS or holds_labels(gpath))
        if labels and (gpath is not None or generated) and not labelled:
            held = gpath.name if gpath is not None else ("generated" if c in DEMO_SPLITS else "downloaded")
            raise PlanError(
                f"{what}: dataset '{ds}' has ground truth ({held}) but no database labels (which images show "
                "the same object), and its labels are what is fitted. The demo's evaluated splits, revisitop's and "
                "GLDv2's retrieval ground truth, gnd.csv and INSTRE's .mat hold none: give a gnd.json with 'labels', "
                "one instance id per 'imlist' image (-1: a distractor; see the README, 'Labels, for a training "
                "split'), or name a labelled split (demo-train, the default, or gldv2-train)"
            )
        if generated or not os.path.isdir(d) or gpath is not None:
            return
        if labels:
            raise PlanError(
                f"{what}: dataset '{ds}' has no ground truth ({d} holds no gnd.json, gnd_{c}.pkl or gnd.csv), and "
                "its labels (which database images show the same object) are what is fitted. Name a labelled split "
                "(the default training_split: demo-train), or add a gnd.json with 'labels' to the folder (see the "
                "README, 'Labels, for a training split')"
            )
        raise PlanError(
            f"{what} needs metrics, and dataset '{ds}' has no ground truth ({d} holds no gnd.json, "
            f"gnd_{c}.pkl or gnd.csv): its results have rankings and neighbour lists only. Add a gnd.csv (see "
            "the README, 'Other benchmarks and your own ground truth'), or ask for the results one by one"
        )

    def ranks_every_image(self, ds):
        """Whether the dataset's metrics are revisitop's, whose mAP needs every database image ranked (the demo
        splits, roxford5k / rparis6k and their +1m, a folder with gnd.csv, gnd_*.pkl, gnd_instre.mat or a revisitop
        gnd.json), rather than GLDv2's mAP@100 or none (a folder without ground truth). Read at plan time from the
        ground-truth file's name; a gnd.json is parsed for its ``protocol`` key. False when the folder is missing
        (the lists then fail with their own message)."""
        c = self.distractor_base(self.canonical(ds)) or self.canonical(ds)
        if c in DEMO_SPLITS or c in DOWNLOADABLE:
            return True
        if c in GLDV2_DOWNLOADABLE:
            return False
        d = self.dataset_dir(c)
        gt = ground_truth_path(d, c) if os.path.isdir(d) else None
        if gt is None or gt.name in (GLDV2_SOLUTION, *GLDV2_TRAIN_LISTS):
            return False
        if gt.name == "gnd.json":
            try:
                with open(gt, encoding="utf-8") as fh:
                    return json.load(fh).get("protocol", "revisitop") != "gldv2"
            except (OSError, ValueError, AttributeError):
                return True  # image_lists reports what is wrong with it
        return True

    def check_evaluable(self, ds):
        if self.canonical(ds) == DISTRACTORS:
            raise PlanError(
                f"dataset '{ds}' is the distractor set: it has no queries. Evaluate a dataset with them "
                f"appended instead, e.g. roxford5k{PLUS}"
            )
        self.distractor_base(ds)  # refuses '{DISTRACTORS}+1m' and '+1m+1m'
        if self.same_data(ds, self.train):
            raise PlanError(
                f"dataset '{ds}' is the training split (training_split: {self.train}"
                + (
                    ""
                    if self.canonical(ds) == self.canonical(self.train)
                    else f", the same folder, {self.shared_folder(ds, self.train)}"
                )
                + "): AMES and Lw are trained on its "
                "labels, and AMES's ITQ and SSP's query model on its images, so its metrics would be inflated. "
                "Evaluate another dataset or change training_split."
            )

    def fitted_on(self, ds, method="global"):
        """What each fitted component behind results/{ds}_{method}.json was fitted on (the results JSON's fitted_on)."""
        method = DEPRECATED_METHODS.get(method, method)
        out = {}

        def how(space):
            return {
                "split": space,
                "images": "database, no labels",
                "evaluated_dataset_itself": space == self.canonical(self.distractor_base(ds) or ds),
                "unsupervised_fit": self.config["unsupervised_fit"],
            }

        if self.config["shortlist"]["source"] == "vlad" and method != "asmk":
            space = self.lw_space() if method == "lw" else self.fit_split(ds)
            out["codebook"] = how(space)
            out["whitening"] = {**how(space), "rule": self.whiten_identity()}  # publish adds whether it was applied
        if method == "asmk" or self.config["shortlist"]["source"] == "asmk":
            out["asmk_codebook"] = how(self.fit_split(ds))
        if method == "lw":
            out["lw"] = {"split": self.canonical(self.train), "data": "same-label pairs of the training split"}
        if method in AMES_METHODS:
            given, teacher = self.ames_checkpoint(method), self.ames_checkpoint("ames")
            if given:  # a released or earlier model, used as it is
                data = f"ames.checkpoint.{method}, used as it is (not trained by this run)"
                out["ames"] = {"checkpoint": given, "data": data}
            elif method == "ames_binary" and teacher:
                out["ames"] = {
                    "split": self.canonical(self.train),
                    "data": f"distilled on the training split from ames.checkpoint.ames ({teacher})",
                }
            else:
                out["ames"] = {"split": self.canonical(self.train), "data": "training split, labels via its global kNN"}
            if self.config["ames"]["select"] == "validation":
                out["ames_selection"] = {"split": self.canonical(self.val), "data": "validation split's ground truth"}
        if method == "ssp":
            out["ssp"] = {"split": self.ssp_split(), "data": "database images, no labels"}
            if self.config["ssp"]["train"]["select"] == "validation":
                out["ssp_selection"] = {
                    "split": self.canonical(self.val),
                    "data": "validation split's ground truth (the adapter's kept epoch)",
                }
        return out

    def ranked_by_local(self):
        """Whether the first stage reads the local descriptors (extract.backbone's): a VLAD or ASMK shortlist; a
        backbone's global descriptors, imported ones or an AMES nn file do not."""
        return self.shortlist_backbone() is None and self.config["shortlist"]["source"] not in ("import", "ames_nn")

    def local_versions(self, ds):
        """The local descriptors' version, for an evaluation that reads them (sv, AMES, ASMK): ``{"extract": v}``."""
        return {"extract": self.v_local(ds)}

    def local_hyperparameters(self):
        """The local extraction's settings for an evaluation that reads them (sv, AMES, ASMK) where the global
        ranking's settings do not hold them already (:meth:`global_hyperparameters`): ``{"extract": ...}`` or ``{}``.
        Under a backbone, imported or nn-file shortlist the global evaluation recorded the local extraction too, so
        changing it alone re-ran that evaluation in place (a new user's trial)."""
        return {} if self.ranked_by_local() else {"extract": self.extract_config()}

    def global_hyperparameters(self, ds=None, space=None):
        """The global ranking's settings, recorded by every evaluation: what its version covers, no more (they are
        the jobs' params: ``unsupervised_fit`` itself is left out, as two modes with the same ``fit_split`` re-ran the
        evaluation in place; fitted_on records it). ``space``: the fit split of descriptors used in another space
        (Lw's), else ``fit_split(ds)``."""
        b = self.shortlist_backbone()
        fit = space or (self.fit_split(ds) if ds else None)
        if self.config["shortlist"]["source"] == "asmk":
            return {  # nothing is fitted on the training split: ASMK's codebook is fitted on fit_split
                "fit_split": fit,
                "crop_queries": self.config["crop_queries"],
                "shortlist": {"source": "asmk"},
                "extract": self.extract_config(),
                "asmk": self.config["asmk"],
                "evaluate": self.evaluate_settings(),
            }
        if self.config["shortlist"]["source"] == "ames_nn":
            return {
                "crop_queries": self.config["crop_queries"],
                "shortlist": {k: self.config["shortlist"][k] for k in ("source", "import_dir", "nn_file")},
                "evaluate": self.evaluate_settings(),
            }
        if b is not None or self.config["shortlist"]["source"] == "import":
            sl = (
                {"source": "backbone", "extract": self.extract_config(b)}
                if b
                else {"source": "import", "import_dir": self.config["shortlist"]["import_dir"]}
            )
            return {
                "crop_queries": self.config["crop_queries"],
                "shortlist": sl,
                "knn": self.knn_identity(),
                "evaluate": self.evaluate_settings(),
            }
        # no training_split (the global ranking fits nothing on it but through fit_split) and knn's identity (not
        # knn.block): these are evaluate_global's params, and a change to a key that does not change the ranking
        # re-ran it in place, and after it spatial verification and every re-ranker that reads its baseline
        return {
            "fit_split": fit,
            "crop_queries": self.config["crop_queries"],
            "shortlist": {"source": "vlad"},
            "extract": self.extract_config(),
            "codebook": self.config["codebook"],
            "aggregate": self.config["aggregate"],
            "whiten": self.config["whiten"],
            "knn": self.knn_identity(),
            "evaluate": self.evaluate_settings(),
        }

    def is_there(self, ds):
        """Whether ``ds`` names a dataset the workflow can read or make: a demo split, a downloadable one, a folder
        that exists, or '{dataset}+1m' where its dataset is one of those."""
        ds = self.canonical(ds)
        if ds.endswith(PLUS):
            return bool(ds[: -len(PLUS)]) and self.is_there(ds[: -len(PLUS)])
        made = ds in DEMO_SPLITS or ds in DOWNLOADABLE or ds in GLDV2_DOWNLOADABLE
        return made or os.path.isdir(self.dataset_dir(ds))

    def result_is_dataset(self, name):
        """For a target ``results/{name}.json`` that names a dataset the workflow can read or make and no method
        (``my_photos``, read as dataset ``my`` and method ``photos``; ``demo``): the message saying how a result is
        named; None for any other name."""
        if not re.fullmatch(DATASET_PATTERN, name) or not self.is_there(name):
            return None
        return (
            f"results/{name}.json: '{name}' is a dataset, and a result names its method after it: "
            f"results/{name}_{{method}}.json (results/{name}_global.json, say), the method one of {', '.join(METHODS)}"
        )

    def _split_hint(self, ds, method):
        """ "; did you mean 'results/{dataset}_{method}.json'?" where a known method name was cut at one of its
        own underscores and the part before it is a dataset there is (``demo_super_global``: dataset ``demo_super``,
        method ``global``, for ``demo`` and ``superglobal``); "" otherwise."""
        best = None  # (similarity, dataset, method)
        for i in [i for i, c in enumerate(ds) if c == "_"]:
            prefix, joined = ds[:i], f"{ds[i + 1 :]}_{method}".lower()
            for m in METHODS:
                score = max(difflib.SequenceMatcher(None, joined, m).ratio(), float(joined.replace("_", "") == m))
                if score >= 0.75 and (best is None or score > best[0]) and self.is_there(prefix):
                    best = (score, prefix, m)
        return f"; did you mean 'results/{best[1]}_{best[2]}.json'?" if best else ""

    def evaluation_path(self, ds, method):
        """The versioned evaluation JSON behind results/{ds}_{method}.json (a deprecated method name: its new one's)."""
        method = DEPRECATED_METHODS.get(method, method)
        if method not in METHODS:
            named = self.result_is_dataset(f"{ds}_{method}")
            if named:
                raise PlanError(named)
            hint = _method_hint(f"{ds}_{method}", method)
            raise PlanError(f"unknown method '{method}' in {ds}_{method}{hint} (available: {', '.join(METHODS)})")
        if "_" in ds and not self.is_there(ds):
            hint = self._split_hint(ds, method)
            if hint:  # a folder that is not there is otherwise image_lists's to name (where to put the photos)
                raise PlanError(
                    f"results/{ds}_{method}.json: read as dataset '{ds}' (no folder {self.dataset_dir(ds)}) and "
                    f"method '{method}'{hint}"
                )
        self.check_evaluable(ds)
        if method in GLOBAL_DESCRIPTOR_METHODS and self.config["shortlist"]["source"] == "asmk":
            raise PlanError(
                f"{ds}_{method}: {method} works on global descriptors and their neighbours, but "
                "shortlist.source: asmk ranks with local descriptors (no global vectors); global, asmk, sv, "
                "ames and ames_binary work from an ASMK shortlist"
            )
        if method == "global":
            return fill(EVAL, dataset=ds, ver=self.v_eval(ds), method="global")
        if method == "asmk":
            return fill(EVAL, dataset=ds, ver=self.v_asmk_eval(ds), method="asmk")
        if method == "sv":
            return fill(EVAL, dataset=ds, ver=self.v_sv(ds), method="sv")
        if method in ("aqe", "adba"):
            return fill(EVAL, dataset=ds, ver=self.v_qe(ds, method), method=method)
        if method == "superglobal":
            return fill(EVAL, dataset=ds, ver=self.v_superglobal(ds), method="superglobal")
        if method == "lw":
            return fill(EVAL, dataset=ds, ver=self.v_lw_eval(ds), method="lw")
        if method == "ssp":
            return fill(EVAL, dataset=ds, ver=self.v_ssp(ds), method="ssp")
        return fill(EVAL, dataset=ds, ver=self.v_eval_ames(ds, method), method=method)

    def v_knn_train(self):
        return stable_hash({"global": self.v_global(self.train), "k": self.config["ames"]["train"]["num_candidates"]})

    def v_itq(self):
        return stable_hash({"local": self.v_local(self.train), "itq": self.config["ames"]["itq"]})

    def ames_checkpoint(self, method):
        """ames.checkpoint.{ames,ames_binary}: a released or earlier-trained model used as it is (no training), as an
        absolute path: a relative ``results/ames_model/{v}/model.pt`` (a model this workflow trained) would otherwise
        be read by Snakemake as train_ames's output, and refused as not the configuration's version."""
        p = self.config["ames"]["checkpoint"][method]
        if p and os.path.isdir(os.path.expanduser(p)):
            raise PlanError(f"ames.checkpoint.{method}: {p} is a folder; name the model file in it (model.pt)")
        if p and not os.path.isfile(os.path.expanduser(p)):
            raise PlanError(f"ames.checkpoint.{method}: {p} not found{_looked_at(p)}")
        return os.path.abspath(os.path.expanduser(p)) if p else p

    def train_validation(self):
        """Early stopping of train_ames (ames.train.patience > 0) on ames.validation_split: what its validation reads,
        or None when training runs all its epochs."""
        a = self.config["ames"]
        if a["train"].get("patience", 0) <= 0:
            return None
        if self.same_data(self.val, self.train):
            raise PlanError(
                f"ames.validation_split '{self.val}' must differ from the training split (early stopping)"
                + (
                    ""
                    if self.canonical(self.val) == self.canonical(self.train)
                    else f": both read {self.shared_folder(self.val, self.train)}"
                )
            )
        return {
            "split": self.val,
            "q_desc": a["q_desc"],
            "db_desc": a["db_desc"],
            "num_rerank": a["train"].get("validation_rerank", 25),
            "lambdas": a["validation_grid"]["lambda"],
            "gammas": a["validation_grid"]["gamma"],
            "junk_mode": a["junk_mode"],
            "fusion": a["fusion"],
        }

    def _precision_key(self):
        """{"precision": ...} when ames.precision is not auto, else nothing: the versions of a configuration that
        leaves it at auto are unchanged (auto resolves per machine; the manifests record the hardware and the dtype
        used). It is part of the models' versions (training's matrix products and its validation) and the logits'."""
        p = self.config["ames"].get("precision", "auto")
        return {} if p == "auto" else {"precision": p}

    @staticmethod
    def _check_desc_range(train, where):
        """PlanError unless each step's descriptor counts can be drawn: ``min_desc`` below ``q_desc`` and ``db_desc``
        (the training draws them in [min_desc, q_desc) and [min_desc, db_desc); TrainConfig checks it too, this
        says so before the DAG runs). ``where`` names the configuration key that holds them."""
        for key in ("q_desc", "db_desc"):
            if train[key] <= train["min_desc"]:
                raise PlanError(
                    f"{where}.{key} ({train[key]}) must be more than {where}.min_desc ({train['min_desc']}): each "
                    f"training step draws its descriptor count in [min_desc, {key})"
                )

    def v_ames_model(self):
        a = self.config["ames"]
        if self.ames_checkpoint("ames"):
            return stable_hash({"checkpoint": self._file_identity(self.ames_checkpoint("ames"))})
        self._check_desc_range(a["train"], "ames.train")
        key = {"local": self.v_local(self.train), "knn": self.v_knn_train(), "model": a["model"], "train": a["train"]}
        key.update(self._precision_key())
        val = self.train_validation()
        if val is not None:
            key["validation"] = {
                **val,
                "local": self.v_local(self.val),
                "knn": self.v_knn(self.val),
                "lists": self.v_lists(self.val),
            }
        return stable_hash(key)

    def distill_train_config(self):
        """The student's schedule: the teacher's, with ames.distill's overrides; no early stopping (it distils for
        ames.distill.epochs)."""
        return {**self.config["ames"]["train"], **self.config["ames"]["distill"], "patience": 0}

    def v_ames_binary_model(self):
        if self.ames_checkpoint("ames_binary"):
            return stable_hash({"checkpoint": self._file_identity(self.ames_checkpoint("ames_binary"))})
        key = {"teacher": self.v_ames_model(), "itq": self.v_itq(), "train": self.distill_train_config()}
        return stable_hash({**key, **self._precision_key()})

    def ames_model_path(self, method):
        if self.ames_checkpoint(method):
            return self.ames_checkpoint(method)
        if method == "ames":
            return fill(AMES_MODEL, ver=self.v_ames_model())
        return fill(AMES_BINARY_MODEL, ver=self.v_ames_binary_model())

    def v_ames_store(self, ds, method):
        model = self.v_ames_model() if method == "ames" else self.v_ames_binary_model()
        return stable_hash({"model": model, "local": self.v_local(ds), "db_desc": self.config["ames"]["db_desc"]})

    def ames_store_path(self, ds, method):
        return fill(AMES_STORE, dataset=ds, ver=self.v_ames_store(ds, method), method=method)

    def ames_max_rerank(self):
        """Logits are cached for the longest shortlist any selection can use: the grid's, or the fixed point's."""
        a = self.config["ames"]
        return max(a["num_rerank"] + ([a["fixed"]["num_rerank"]] if a["select"] == "fixed" else []))

    def v_logits(self, ds, method):
        a = self.config["ames"]
        model = self.v_ames_model() if method == "ames" else self.v_ames_binary_model()
        keys = ("q_desc", "db_desc", "junk_mode")
        return stable_hash(
            {
                "model": model,
                "local": self.v_local(ds),
                "knn": self.v_knn(ds),
                "lists": self.v_lists(ds),
                "max_rerank": self.ames_max_rerank(),
                **{k: a[k] for k in keys},
                **self._precision_key(),
            }
        )

    def ames_geometry(self):
        """``ames.geometry`` when AMES's score fuses spatial verification's inliers (a non-zero weight in
        ``ames.geometry.weight``), else None (also for a configuration without the key). PlanError when the fixed
        point asks for a weight the grid cannot use, or sv verifies a shorter shortlist than AMES re-ranks."""
        a = self.config["ames"]
        g = a.get("geometry")
        used = bool(g) and any(w > 0 for w in g["weight"])
        if a["select"] == "fixed" and a["fixed"].get("geometry_weight", 0.0) > 0 and not used:
            raise PlanError("ames.fixed.geometry_weight > 0 needs a non-zero value in ames.geometry.weight")
        if not used:
            return None
        if self.config["sv"]["num_rerank"] < self.ames_max_rerank():
            raise PlanError(
                f"sv.num_rerank ({self.config['sv']['num_rerank']}) must be at least the largest AMES shortlist "
                f"({self.ames_max_rerank()}: ames.num_rerank, or ames.fixed.num_rerank with select: fixed) when "
                "ames.geometry.weight fuses sv's inliers; raise "
                "sv.num_rerank, or set ames.geometry.weight: [0.0] for AMES alone"
            )
        return g

    def sv_paths(self, ds):
        """The evaluate_sv outputs AMES's geometric fusion reads: the results JSON and the ranking with ``inliers``."""
        path = fill(EVAL, dataset=ds, ver=self.v_sv(ds), method="sv")
        return {"json": path, "ranking": beside(path, "sv_ranking.h5")}

    def v_eval_ames(self, ds, method):
        a = self.config["ames"]
        keys = ("num_rerank", "lambda", "gamma", "select", "junk_mode", "fusion")
        val = self.v_logits(self.val, method) if a["select"] == "validation" else None
        own = {}
        if self.ames_geometry():  # absent otherwise: the versions of a configuration without geometry are unchanged
            own = {
                "geometry": self.ames_geometry(),
                "sv": self.v_sv(ds),
                "validation_sv": self.v_sv(self.val) if a["select"] == "validation" else None,
            }
        return stable_hash(
            {
                "logits": self.v_logits(ds, method),
                "validation": val,
                "global": self.v_eval(ds),
                **{k: a[k] for k in keys},
                # the method's own point: ames.fixed.binary moves ames_binary's evaluation only
                "fixed": fixed_point(a["fixed"], method),
                "bootstrap": self.config["evaluate"]["bootstrap"],
                "csv_top": self.config["evaluate"]["csv_top"],
                **own,
            }
        )

    def ames_versions(self, ds, method):
        out = {**self.versions(ds), **self.local_versions(ds)}
        trained = () if self.ames_checkpoint(method) else (self.train,)
        selected = (self.val,) if self.config["ames"]["select"] == "validation" else ()
        out["demo_data"] = out["demo_data"] or self.demo_version(*trained, *selected)
        out.update(
            {
                "ames_model": self.v_ames_model(),
                "logits": self.v_logits(ds, method),
                "evaluate": self.v_eval_ames(ds, method),
                "global_evaluate": self.v_eval(ds),
            }
        )
        if not self.ames_checkpoint(method):
            out["knn_train"] = self.v_knn_train()
        if method == "ames_binary":
            out["ames_binary_model"] = self.v_ames_binary_model()
            if not self.ames_checkpoint(method):
                out["itq"] = self.v_itq()
        if self.config["ames"]["select"] == "validation":
            out["validation_logits"] = self.v_logits(self.val, method)
        if self.ames_geometry():
            out["sv"] = self.v_sv(ds)
            if self.config["ames"]["select"] == "validation":
                out["validation_sv"] = self.v_sv(self.val)
        return out

    def ames_hyperparameters(self, ds, method):
        a = self.config["ames"]
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
        out = {"global": self.global_hyperparameters(ds), **self.local_hyperparameters(), **{k: a[k] for k in keys}}
        if self.ames_geometry():
            out.update({"geometry": a["geometry"], "sv": self.config["sv"]})
        if self.ames_checkpoint(method):
            out["checkpoint"] = os.path.abspath(self.ames_checkpoint(method))
            del out["train"]
        else:  # trained (or, for ames_binary, distilled) here, on the training split's labels
            out["training_split"] = self.canonical(self.train)
            if method == "ames_binary":
                out.update({"itq": a["itq"], "distill": a["distill"]})
        return out

    def _v_reranked(self, ds, **own):
        """The version of a re-ranker's evaluation of ``ds``: its own inputs and configuration (``own``), the shortlist
        it re-orders, the lists, and the evaluation settings it reports with."""
        return stable_hash(
            {
                **own,
                "knn": self.v_knn(ds),
                "lists": self.v_lists(ds),
                "evaluate": self.evaluate_settings(),
                "bootstrap": self.config["evaluate"]["bootstrap"],
            }
        )

    def v_qe(self, ds, method):
        dba = self.config["adba"] if method == "adba" else None
        return self._v_reranked(ds, **{"global": self.v_global(ds), "aqe": self.config["aqe"], "adba": dba})

    def v_superglobal(self, ds):
        return self._v_reranked(ds, **{"global": self.v_global(ds), "superglobal": self.config["superglobal"]})

    def lw_versions(self, ds):
        """evaluate_lw's ``versions``: the baseline's (``versions(ds)``), the global descriptors Lw re-ranks, in the
        training split's fit space (its codebook and whitening), and Lw itself."""
        space = self.lw_space()
        out = self.versions(ds)
        vlad = self.config["shortlist"]["source"] == "vlad"
        out["demo_data"] = out["demo_data"] or self.demo_version(self.train, *([space] if vlad else []))
        if vlad:
            out.update(
                {
                    "lw_space": space,
                    "extract_lw_space": self.v_local(space),
                    "codebook_lw_space": self.v_codebook(space),
                    "whiten_lw_space": self.v_whiten(space),
                }
            )
        out.update(
            {
                "global_lw_space": self.v_global(ds, space),
                "lw": self.v_lw(),
                "evaluate": self.v_lw_eval(ds),
                "global_evaluate": self.v_eval(ds),
            }
        )
        return out

    def lw_hyperparameters(self, ds):
        """evaluate_lw's ``hyperparameters``: the global pipeline's in Lw's space (its fit split) and Lw's, with the
        training split whose same-label pairs it was learned from."""
        return {
            "global": self.global_hyperparameters(ds, self.lw_space()),
            "lw": {**self.config["lw"], "training_split": self.canonical(self.train)},
        }

    def v_lw(self):
        return stable_hash(
            {
                "global": self.v_global(self.train),
                "lists": self.v_lists(self.train),
                "lw": self.config["lw"],
                "fit": FIT_VERSION,
            }
        )

    def v_lw_eval(self, ds):
        return self._v_reranked(ds, **{"global": self.v_global(ds, self.lw_space()), "lw": self.v_lw()})

    def v_sv(self, ds):
        return self._v_reranked(ds, local=self.v_local(ds), sv=self.config["sv"])

    def ssp_split(self):
        return self.config["ssp"]["anchors"]["split"] or self.train

    def anchors_config(self):
        """``ssp.anchors`` as its version and the anchors job's params see it: a ``split`` naming the training split
        (or an alias of it) is written as its default, null (a new user's trial wrote the default out and re-ran
        the anchors, the 140 s adapter training and the evaluation)."""
        cfg = dict(self.config["ssp"]["anchors"])
        if cfg["split"] and self.canonical(cfg["split"]) == self.canonical(self.train):
            cfg["split"] = None
        return cfg

    def v_anchors(self, space):
        """SSP's anchors in the gallery space ``space`` (the evaluated dataset's fit split): PQ codewords of the
        ssp split's database descriptors in that space."""
        if self.config["shortlist"]["source"] != "vlad":
            raise PlanError(
                "ssp: the light query model maps into the VLAD gallery space; it needs shortlist.source: vlad"
            )
        if self.config["extract"]["backbone"] != "sift":
            # the light model's half-resolution SIFT went through a codebook of another backbone's descriptors and
            # failed in train_query with numpy's shape error, after every extraction (helper-145)
            raise PlanError(
                "ssp: the light query model is half-resolution SIFT (ssp.query_sift) through the gallery's VLAD "
                "codebook, which is fitted on extract.backbone's local descriptors; it needs extract.backbone: sift "
                f"(here {self.config['extract']['backbone']})"
            )
        return stable_hash(
            {
                "global": self.v_global(self.ssp_split(), space),
                "anchors": self.anchors_config(),
                "fit": FIT_VERSION,
            }
        )

    def ssp_validation(self, space):
        """ssp.train.select: validation: ``{"split", "light_query", "db", "gnd"}``, the validation split
        (ames.validation_split) whose light queries, through the adapter, search its database in the gallery space
        ``space`` to choose the kept epoch; None for select: loss. PlanError naming the key where the split has no
        ground truth."""
        if self.config["ssp"]["train"]["select"] != "validation":
            return None
        val = self.val
        self.check_ground_truth(val, f"ames.validation_split ('{val}', whose mAP ssp.train.select: validation reads)")
        return {
            "split": self.canonical(val),
            "light_query": self.local_store(val, "query", self.v_ssp_local(val)),
            "db": self.global_path(val, "db", space),
            "gnd": self.gnd_json(val),
        }

    def v_query_model(self, space):
        validation = self.ssp_validation(space)
        return stable_hash(
            {
                "light": self.v_ssp_local(self.ssp_split()),
                "global": self.v_global(self.ssp_split(), space),
                "anchors": self.v_anchors(space),
                "train": self.config["ssp"]["train"],
                "codebook": self.v_codebook(space),
                "whiten": self.v_whiten(space),
                "aggregate": self.config["aggregate"],
                "power": self.config["whiten"]["power"],
                "fit": FIT_VERSION,
                "ssp": SSP_VERSION,
                # the validation split's light queries, database and ground truth (select: validation)
                **(
                    {}
                    if validation is None
                    else {
                        "validation": {
                            "light": self.v_ssp_local(validation["split"]),
                            "global": self.v_global(validation["split"], space),
                            "lists": self.v_lists(validation["split"]),
                        }
                    }
                ),
            }
        )

    def v_ssp(self, ds):
        return stable_hash(
            {
                "model": self.v_query_model(self.fit_split(ds)),
                "light": self.v_ssp_local(ds),
                "global": self.v_global(ds),
                "lists": self.v_lists(ds),
                "evaluate": self.evaluate_settings(),
                "bootstrap": self.config["evaluate"]["bootstrap"],
                "cost_images": self.config["ssp"]["cost_images"],
            }
        )

    def asmk_kernel_config(self):
        """What the inverted file and the search use (the codebook has its own version)."""
        a = self.config["asmk"]
        return {k: a[k] for k in ("binary", "use_idf", "multiple_assignment", "alpha", "similarity_threshold")}

    def v_asmk_codebook(self, space):
        return stable_hash({"local": self.v_local(space), "asmk_codebook": self.config["asmk"]["codebook"]})

    def asmk_codebook_path(self, space):
        """ASMK's visual words, fitted like the VLAD codebook on the fit split's database images (unsupervised_fit)."""
        return fill(ASMK_CODEBOOK, space=space, ver=self.v_asmk_codebook(space))

    def v_asmk_ivf(self, ds):
        a = self.config["asmk"]
        return stable_hash(
            {
                "local": self.v_local(ds),
                "codebook": self.v_asmk_codebook(self.fit_split(ds)),
                "binary": a["binary"],
                "db_multiple_assignment": a["multiple_assignment"]["db"],
                "asmk": ASMK_VERSION,
            }
        )

    def v_asmk_search(self, ds):
        return stable_hash(
            {
                "ivf": self.v_asmk_ivf(ds),
                "local": self.v_local(ds),
                "lists": self.v_lists(ds),
                "asmk": self.asmk_kernel_config(),
            }
        )

    def asmk_knn_path(self, ds):
        """The ASMK ranking of a dataset: the shortlist itself with shortlist.source: asmk, else its own file."""
        if self.config["shortlist"]["source"] == "asmk":
            return self.knn_path(ds)
        return fill(ASMK_SEARCH, dataset=ds, ver=self.v_asmk_search(ds))

    def v_asmk_eval(self, ds):
        return stable_hash(
            {
                "asmk": self.v_asmk_search(ds),
                "global": self.v_eval(ds),
                "evaluate": self.evaluate_settings(),
                "bootstrap": self.config["evaluate"]["bootstrap"],
            }
        )

    def asmk_versions(self, ds):
        base = self.versions(ds)
        return {
            **base,
            **self.local_versions(ds),
            "demo_data": base["demo_data"] or self.demo_version(self.fit_split(ds)),  # its codebook's images
            "asmk_codebook": self.v_asmk_codebook(self.fit_split(ds)),
            "asmk_ivf": self.v_asmk_ivf(ds),
            "asmk_search": self.v_asmk_search(ds),
            "evaluate": self.v_asmk_eval(ds),
            "global_evaluate": self.v_eval(ds),
        }

    def search_space(self, collection):
        """New photos are described in the collection's space (its codebook and whitening), never in their own: where
        the global descriptors are VLAD, under ``shortlist.source`` ``vlad`` and ``asmk`` (the search ranks by the
        VLAD under both; under ``asmk`` the photos were aggregated with a codebook and whitening fitted on
        themselves, and found their own original first 6 times in 30, helper-141); None for a backbone's or
        imported descriptors, which have no space."""
        return self.fit_split(collection) if self.config["shortlist"]["source"] in ("vlad", "asmk") else None

    def search_depth(self):
        """How many neighbours ``search_knn`` fetches per new photo: ``search.k``, or ``sv.num_rerank`` when that is
        larger and ``search.rerank`` is ``sv`` (spatial verification checks its top ``num_rerank``; the files list
        the first ``search.k`` of the verified order)."""
        s = self.config["search"]
        return max(s["k"], self.config["sv"]["num_rerank"]) if s["rerank"] == "sv" else s["k"]

    def v_search_knn(self, collection, photos):
        space = self.search_space(collection)
        return stable_hash(
            {
                "query": self.v_global(photos, space),
                "db": self.v_global(collection, space),
                "k": self.search_depth(),
                # knn's search settings, not its k: the depth is search_depth (changing knn.k re-ran the search for
                # byte-identical files, helper-141)
                "knn": {key: v for key, v in self.knn_identity().items() if key != "k"},
            }
        )

    def v_search(self, collection, photos):
        s = self.config["search"]
        sv = (
            {"sv": self.config["sv"], "local": [self.v_local(photos), self.v_local(collection)]}
            if s["rerank"] == "sv"
            else {}
        )
        return stable_hash(
            {
                "knn": self.v_search_knn(collection, photos),
                "lists": [self.v_lists(photos), self.v_lists(collection)],
                "search": s,
                **sv,
            }
        )

    def search_dir(self, collection, photos):
        return fill(SEARCH, collection=collection, photos=photos, ver=self.v_search(collection, photos))

    def uses_feature_cache(self, ds, backbone):
        """Whether a dataset's extraction with ``backbone`` comes from the feature cache: images on disk in a folder."""
        ds = self.canonical(ds)
        if not self.config["extract"]["cache"] or backbone == "ames_import":
            return False
        if ds in DEMO_SPLITS or ds == DISTRACTORS or self.distractor_base(ds) is not None:
            return False
        d = self.dataset_dir(ds)
        if not os.path.isdir(d):
            return False
        try:
            return all(os.path.exists(p) for p in self.folder_source(ds))  # not waiting for a download
        except PlanError:
            return False

    def cache_key(self, backbone, backbone_config):
        return fcache.extraction_key(
            backbone,
            self.backbone_identity(backbone, backbone_config),
            DECODER_VERSION,
            self.config["max_image_pixels"],
        )

    def cache_dir(self, xv):
        return f"{FEATURES}/{xv}/packs"

    # ------------------------------------------------------------------------------ paths of single artifacts
    def logits_path(self, ds, method):
        return fill(AMES_LOGITS, dataset=ds, ver=self.v_logits(ds, method), method=method)

    def knn_train_path(self):
        return fill(KNN_TRAIN, ver=self.v_knn_train())

    def itq_path(self):
        return fill(ITQ, ver=self.v_itq())

    def lw_path(self):
        return fill(LW, ver=self.v_lw())

    def anchors_path(self, space):
        return fill(ANCHORS, space=space, ver=self.v_anchors(space))

    def query_model_path(self, space):
        return fill(QUERY_MODEL, space=space, ver=self.v_query_model(space))

    def asmk_ivf_path(self, ds):
        return fill(ASMK_IVF, dataset=ds, ver=self.v_asmk_ivf(ds))

    def search_knn_path(self, collection, photos):
        return fill(SEARCH_KNN, collection=collection, photos=photos, ver=self.v_search_knn(collection, photos))

    def extraction_params(self, ds, ver):
        """(backbone, its configuration as versioned) of the extraction with version ``ver``: the extraction and
        merge jobs' params. For a deep backbone, ``device`` is left out and the ``checkpoint`` and ``detector``
        files are ``{"sha1": ...}`` (:meth:`backbone_identity`): neither the device nor the path a file is named by
        is in a version, so as params they re-ran every extraction chunk or merge in place, and all that followed,
        when only they changed (``cpu`` for ``auto``, or a relative path written absolutely: new users' trials).
        The extraction job reads them from the configuration (``stages.extract.job_backbone_config``)."""
        backbone, cfg = self.extraction_of(ds, ver)
        if backbone not in DEEP_BACKBONES:
            return backbone, cfg
        ident = self.backbone_identity(backbone, cfg)
        return backbone, {k: ident[k] for k in cfg if k != "device"}

    def extraction_of(self, ds, ver):
        """(backbone, its configuration) of the extraction with version ``ver``: the local one, the shortlist's or
        SSP's light one."""
        candidates = [self.config["extract"]["backbone"], self.shortlist_backbone()]
        for b in dict.fromkeys(c for c in candidates if c):
            if self.v_local(ds, b) == ver:
                return b, self.config["extract"][b]
        if self.v_ssp_local(ds) == ver:
            return "sift", self.config["ssp"]["query_sift"]
        raise PlanError(
            f"{ver} is not the version the current configuration gives for the local descriptors of "
            f"{ds}; request the top-level results/{{dataset}}_{{method}}.json targets"
        )


def problems_beside_schema(config: dict[str, Any]) -> list[str]:
    """:meth:`Plan.config_problems` for a configuration the schema refused, so that one run names every problem (a
    schema problem was said first and alone, the others only once it was fixed); [] where a refused value stops
    the checks (a value of the wrong type: the schema's lines name it), which the Snakefile avoids by setting the
    refused values back to their defaults first (``config_errors.with_defaults``); it also leaves out the lines
    naming a key the schema's lines name (``config_errors.not_named_by``)."""
    try:
        return Plan(config).config_problems()
    except (KeyError, TypeError, ValueError, AttributeError, OSError):
        return []

"""The image lists a DAG is planned from, and the feature cache's plan made from them: once per DAG build, for
Snakemake's input functions.

While Snakemake builds the DAG, several input functions need a dataset's lists: the feature cache's extraction plan
(which photos are new), the inputs that name every listed image, the memory of the jobs that hold a ranking, and
the check that a target's shortlist covers the database where the metrics need every image ranked. They get here
what ``image_lists`` (and ``database_list``) will write: the lists file when it is fresh (``fresh_lists``: newer
than every source and listed image), else the lists built the same way (header reads only). Bad input is said once,
as a warning, and gives None: the job that builds the lists then fails with its own message, and the jobs that do
not need them still run.

The warnings go through ``warn`` (Snakemake's ``logger.warning`` in the workflow), the errors are
:class:`~retrieval.plan.PlanError` (the workflow raises them as Snakemake's ``WorkflowError``). This is the
workflow's own planning, not a library's: nothing outside knows this project's list files.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrieval import job_memory
from retrieval.data import datasets
from retrieval.data.datasets import build_database_list, build_image_lists, fresh_lists, warn_images_beside_jpg
from retrieval.data.download import SOURCES
from retrieval.input_errors import describe, mark_said
from retrieval.plan import DEMO_SPLITS, DISTRACTORS, FEATURES, GLDV2_DOWNLOADABLE, Plan, PlanError, beside
from retrieval.runtime import read_json, write_json
from retrieval.search import ivfpq
from retrieval.stores import feature_cache as fcache
from retrieval.stores.global_store import global_shape

Lists = dict[str, Any]  # lists.json's structure: {"db": [...], "query": [...], ...}


class DagLists:
    """The lists of each dataset as the DAG plans from them, computed once per DAG build (one instance per build).

    ``plan``: the run's :class:`~retrieval.plan.Plan`; ``config``: its configuration (``crop_queries``,
    ``on_bad_image``, ``max_image_pixels``, ``gldv2``, ``knn``, ``ames``, ``demo``); ``warn``: called with each
    warning's text (once per dataset and kind)."""

    def __init__(self, plan: Plan, config: dict[str, Any], warn: Callable[[str], None]) -> None:
        self.plan, self.config, self.warn = plan, config, warn
        self._lists: dict[str, Lists | None] = {}
        self._databases: dict[str, Lists | None] = {}
        self._warned: set[tuple[str, str]] = set()
        self._scan_said: set[str] = set()

    def warn_once(self, kind: str, ds: str, message: str) -> None:
        """``warn`` with ``message``, the first time a build says this ``kind`` of warning of dataset ``ds``."""
        if (kind, ds) not in self._warned:
            self._warned.add((kind, ds))
            self.warn(message)

    @contextlib.contextmanager
    def _scan_warnings_once(self):
        """The folder scan's warnings (files left out, images beside jpg/) said once a build: a plain folder is
        scanned for its lists and again for its database list, and a folder holding a .gif said "left out" twice
        (a new user's trial). The scan's own warnings are unchanged outside this block (each job says them)."""

        def first(record: logging.LogRecord) -> bool:
            text = record.getMessage()
            if text in self._scan_said:
                return False
            self._scan_said.add(text)
            return True

        scan_log = logging.getLogger(datasets.__name__)
        scan_log.addFilter(first)
        try:
            yield
        finally:
            scan_log.removeFilter(first)

    # ---------------------------------------------------------------------------------------------------- the lists
    def lists(self, ds: str) -> Lists | None:
        """The dataset's lists as ``image_lists`` will write them: its lists.json when newer than every source and
        listed image, else built here. None when they cannot be built (bad input, warned of once)."""
        return self._cached(self._lists, ds, self._read_or_build_lists)

    def _read_or_build_lists(self, ds: str) -> Lists | None:
        path = self.plan.lists_json(ds)
        lists = fresh_lists(
            path,
            lambda x: self.plan.folder_source(ds) + [e["path"] for s in ("db", "query") for e in x[s]],
            beside(path, "manifest.json"),
            self.plan.dataset_dir(ds),
            ds,
        )
        if lists is not None:
            self._warn_beside_jpg(ds)
            return lists
        c = self.config
        try:
            with self._scan_warnings_once():
                lists, _ = build_image_lists(
                    self.plan.dataset_dir(ds),
                    ds,
                    c["crop_queries"],
                    c["on_bad_image"],
                    c["max_image_pixels"],
                    c["gldv2"],
                )
        # every exception, not only bad input's (OSError, ValueError): Snakemake takes an input function's exception
        # for "no producer" and keeps an existing output, so an unexpected one (Pillow's DecompressionBombError from a
        # raw file's preview, helper-131) left "nothing to be done" and every later change to the photos unseen
        except Exception as e:  # noqa: BLE001 -- said here; image_lists raises it again, with the file
            # the jobs that do not need the lists (a database listed apart: its side) still run
            apart = self.plan.database_apart(ds)  # a plain folder or gnd.csv: its database is listed by database_list
            if apart and self.database(ds) is None:
                return None  # the database's own warning names the error: no job of ds runs (a search's photos too)
            self.warn(
                f"{ds}: the image lists cannot be built, and image_lists will stop on this"
                + (
                    " (the queries' side: evaluations, query extraction; the database side and searches against it "
                    "do not need them)"
                    if apart
                    else ""
                )
                + f": {describe(e)}"
            )
            return None
        return lists

    def database(self, ds: str) -> Lists | None:
        """The database list of a dataset that lists it apart, as ``database_list`` will write it: its db.json when
        newer than every source and listed image, else built here. None when it cannot be built (``database_list``
        then fails with its own message). Unlike :meth:`lists`, a broken gnd.csv or query list does not reach it,
        so the database side's inputs stay as they were while the ground truth is being fixed."""
        return self._cached(self._databases, ds, self._read_or_build_database)

    def _cached(self, store: dict[str, Lists | None], ds: str, build: Callable[[str], Lists | None]) -> Lists | None:
        """``build(ds)`` once a build (None, bad input, is kept too: it was said once)."""
        ds = self.plan.canonical(ds)
        if ds not in store:
            store[ds] = build(ds)
        return store[ds]

    def _read_or_build_database(self, ds: str) -> Lists | None:
        path = self.plan.database_json(ds)
        db = fresh_lists(
            path,
            lambda x: self.plan.database_source(ds) + [e["path"] for e in x["db"]],
            beside(path, "db.manifest.json"),
            self.plan.dataset_dir(ds),
            ds,
            database=True,
        )
        if db is not None:
            self._warn_beside_jpg(ds)
            return db
        try:
            with self._scan_warnings_once():
                return build_database_list(
                    self.plan.dataset_dir(ds), ds, self.config["on_bad_image"], self.config["max_image_pixels"]
                )
        except Exception as e:  # noqa: BLE001 -- every exception, as in _read_or_build_lists
            self.warn(
                f"{ds}: the database list cannot be built, and database_list will stop on this (so will every job that "
                f"needs {ds}'s images, a search of its photos too): {describe(e)}"
            )
            return None

    def _warn_beside_jpg(self, ds: str) -> None:
        """The scan's warning about images put beside jpg/, also when the lists are reused (adding a file there
        changes nothing the workflow watches): for a scanned database (listed apart, without image_list.txt)."""
        if ("beside", ds) not in self._warned and self.plan.scans_folder(ds):
            with self._scan_warnings_once():  # a scan in this build may have said it already
                warn_images_beside_jpg(Path(self.plan.dataset_dir(ds)))
            self._warned.add(("beside", ds))

    def planning(self, ds: str) -> Lists | None:
        """The lists the feature cache plans from: the dataset's, or where they cannot be built (a broken gnd.csv)
        but its database is listed apart, that database alone, so the database side keeps its inputs."""
        lists = self.lists(ds)
        if lists is None and self.plan.database_apart(ds):
            db = self.database(ds)
            if db is not None:
                return {"db": db["db"], "query": []}
        return lists

    # ------------------------------------------------------------------------------------------------ the rankings
    @functools.cached_property
    def distractor_count(self) -> int:
        """The distractors '{dataset}+1m' appends: the lines of revisitop1m.txt where it is on disk, else R1M's
        1,000,000 (before the download)."""
        listed = os.path.join(self.plan.dataset_dir(DISTRACTORS), f"{DISTRACTORS}.txt")
        if not os.path.isfile(listed):
            return 1_000_000
        with open(listed, "rb") as f:
            return sum(1 for line in f if line.strip())

    def ranking_shape(self, ds: str) -> tuple[int, int] | None:
        """(queries, database images) of ``ds``'s full ranking where the plan reads them (a database listed apart,
        or '{dataset}+1m': the base's lists and the distractors' count), else None."""
        base = self.plan.distractor_base(ds)
        if base is not None:
            if self.plan.canonical(base) in GLDV2_DOWNLOADABLE or not os.path.isdir(self.plan.dataset_dir(base)):
                return None  # not there before its download or generation (and GLDv2's lists are not read here)
            lists = self.lists(base)
            return None if lists is None else (len(lists["query"]), len(lists["db"]) + self.distractor_count)
        if not self.plan.database_apart(ds):
            return None
        lists = self.lists(ds)
        return None if lists is None else (len(lists["query"]), len(lists["db"]))

    def ranking_mem_mb(self, ds: str, base: int, rankings: int = 1) -> int:
        """mem_mb (MB) of a job that holds ``rankings`` of ``ds``'s neighbours or full rankings:
        :func:`retrieval.job_memory.ranking_mem_mb` of the sizes read here, ``base`` where they are not. A full
        ranking (knn.k 0) of a collection without ground truth above ``FULL_RANKING_WARN_PAIRS`` is warned of,
        naming knn.k; so is a knn.k at least the database size."""
        ds = self.plan.canonical(ds)
        shape = self.ranking_shape(ds)
        if shape is None:
            return base
        n_q, n_db = shape
        k = self.config["knn"]["k"]
        pairs = job_memory.ranking_pairs(n_q, n_db, k)
        full = k == 0 and pairs > job_memory.FULL_RANKING_WARN_PAIRS and ("full", ds) not in self._warned
        if full and not self.plan.ranks_every_image(ds):  # (a gnd.json is parsed for its protocol: asked once)
            self.warn_once(
                "full",
                ds,
                f"{ds}: the full ranking of {n_q} queries x {n_db} images is {pairs / 1e6:.0f}M pairs (about "
                f"{job_memory.BYTES_PER_RANKED_PAIR * pairs / 1e9:.1f} GB in knn); a collection without ground "
                "truth needs only its top neighbours: set knn: {k: 1000} in a --configfile (or search new "
                "photos against it, which ranks only them)",
            )
        self.warn_whole_database(ds, k, n_db)
        return job_memory.ranking_mem_mb(base, n_q, n_db, k, rankings)

    def ivfpq_mem_mb(self, db_path: str | os.PathLike) -> int:
        """MB an IVF-PQ search (``knn.search: ivfpq``) adds to a job searching the global descriptors ``db_path``:
        :func:`retrieval.job_memory.ivfpq_mem_mb` of its training sample and codes, as ``plan_ivfpq`` plans them for
        the file's (N, D); 0 for exact search, for a plan that falls back to exact search or cannot train (the job
        says why), and for a file not made yet (Snakemake evaluates a job's resources again once its inputs are
        there, before it runs or is submitted)."""
        if self.config["knn"]["search"] != "ivfpq":
            return 0
        try:
            n_db, d = global_shape(db_path)
        except (OSError, ValueError, KeyError):
            return 0
        quiet = ivfpq.log.disabled  # its warnings are the job's to log, not the scheduler's
        ivfpq.log.disabled = True
        try:
            plan = ivfpq.plan_ivfpq(n_db, d, self.config["knn"]["ivfpq"])
        except ValueError:
            return 0
        finally:
            ivfpq.log.disabled = quiet
        if "fallback" in plan:
            return 0
        return job_memory.ivfpq_mem_mb(plan["n_train"], d, n_db, plan["m"])

    def warn_whole_database(self, ds: str, k: int, n_db: int) -> None:
        """Name, once a dataset, a knn.k at least its database size: the search caps it, so the ranking is the full
        one, under knn.k's own version (a new user's trial set 1000 for 85 photos and got no word of either)."""
        if 0 < k >= n_db and self.config["shortlist"]["source"] not in ("asmk", "ames_nn"):  # knn.k unused there
            ds = self.plan.canonical(ds)
            self.warn_once(
                "whole",
                ds,
                f"{ds}: knn.k is {k}, at least its {n_db} database images: every image is ranked, as with knn.k: 0, "
                "but under knn.k's own version (knn and what follows it are computed again rather than shared with "
                "knn.k: 0)",
            )

    def check_full_ranking(self, ds: str, method: str) -> None:
        """Refuse (PlanError), while the DAG is built, a shortlist shorter than the database (knn.k) where the
        metrics are revisitop's, which need every database image ranked: evaluate_global would refuse it only after
        every stage before it (AMES's training included) had run. For ames and ames_binary the validation split is
        checked too (the point is chosen, and training stopped early, on its metrics: a new user's trial trained on
        a truncated demo-val ranking, then failed at its evaluate_global), and it must have ground truth. asmk ranks
        with its own search; an imported ames_nn shortlist is not knn.k's. Where the lists cannot be built yet,
        image_lists says why. The training split of a method fitted on its labels (lw; ames and ames_binary without a
        checkpoint) must have ground truth."""
        target = f"results/{ds}_{method}.json"
        mode = self.config["unsupervised_fit"]
        if mode not in ("self", "training", "cross"):  # a named folder of photos that cannot be listed (empty): it
            # failed in database_list without naming the key (a new user's trial)
            fit = self.plan.fit_split(ds)
            self._check_listable(fit, f"unsupervised_fit ('{mode}', for {target})")
        ames = self.config["ames"]
        validated = method in ("ames", "ames_binary") and (
            ames["select"] == "validation" or ames["train"].get("patience", 0) > 0
        )
        val = self.plan.val
        if validated:
            self.plan.check_ground_truth(val, f"ames.validation_split ('{val}', for {target})")
        # fitted here on the training split's labels: Lw's pairs, AMES's training (not a given ames.checkpoint); a
        # plain folder failed in lw_fit, after its extraction and aggregation (a new user's trial)
        if method == "lw" or (method in ("ames", "ames_binary") and not self.plan.ames_checkpoint(method)):
            train = self.plan.train
            self.plan.check_ground_truth(train, f"training_split ('{train}', for {target})", labels=True)
            self._check_listable(train, f"training_split ('{train}', for {target})")
        if validated:
            self._check_listable(val, f"ames.validation_split ('{val}', for {target})")
        k = self.config["knn"]["k"]
        if method == "asmk" or self.config["shortlist"]["source"] in ("asmk", "ames_nn"):
            return
        if k == 0 and self.config["knn"]["search"] == "ivfpq":  # it failed in the knn job, after every stage before it
            raise PlanError(
                f"{target}: knn.search: ivfpq returns a top-k shortlist, and knn.k is 0 (the full ranking): set knn.k "
                "(e.g. 1000) for a collection without ground truth, or knn.search: exact (the revisitop metrics need "
                "the full ranking)"
            )
        if k == 0:
            return
        self._check_shortlist(target, ds, k)
        if validated:
            self._check_shortlist(f"{target} (its ames.validation_split)", val, k)

    def _check_listable(self, ds: str, what: str) -> None:
        """PlanError naming ``what`` (the key that names ``ds``) where a folder split's lists cannot be built: a
        training split of a gnd.csv and no images got only the lists' warning, which named the folder but not the
        key, and the dry run went on to plan every job before it (a new user's trial). Datasets whose lists are not
        read here (the demo before it is generated, revisitop's and GLDv2's downloads) are left to image_lists."""
        c = self.plan.canonical(ds)
        if not self.plan.database_apart(c) or not os.path.isdir(self.plan.dataset_dir(c)):
            return
        if self.lists(c) is None:
            raise PlanError(
                f"{what}: the split's image lists cannot be built ({self.plan.dataset_dir(c)}; the warning above says "
                "why): fix the folder, or name another split"
            )

    def _check_shortlist(self, target: str, ds: str, k: int) -> None:
        if not self.plan.ranks_every_image(ds):
            return
        c = self.plan.canonical(ds)
        n_db = None  # unknown, at least k + 1
        if c in DEMO_SPLITS and (not os.path.isdir(self.plan.dataset_dir(c)) or self.lists(ds) is None):
            # not generated yet (asked without building: a spurious "lists cannot be built" warning): its
            # distractors alone are more than k?
            split = {"demo": "test", "demo-val": "val", "demo-train": "train"}[c]
            if k >= self.config["demo"][split]["distractors"]:
                return
        elif not self.plan.distractor_base(c):  # '{dataset}+1m': a million distractors and more
            lists = self.lists(ds)
            if lists is None:
                return  # image_lists will say what is wrong
            n_db = len(lists["db"])
            if k >= n_db:  # the top k is the whole database
                self.warn_whole_database(ds, k, n_db)
                return
        base = self.plan.distractor_base(c)
        fewer = (
            f"{k} images, fewer than the database ({base}'s images and the {SOURCES[DISTRACTORS]['n_db']:,} "
            f"{DISTRACTORS} distractors)"
            if base
            else f"{k} images, fewer than the database"
        )
        raise PlanError(
            f"{target}: knn.k is {k}, a shortlist of "
            + (f"{k} of the {n_db} database images" if n_db else fewer)
            + f", but {ds}'s revisitop metrics need every database image ranked. Set knn.k: 0 (and knn.search: "
            "exact); a truncated shortlist is for a dataset without ground truth or with GLDv2's mAP@100"
        )


def _others(n: int, after: list[str]) -> str:
    """'of them have' for the log line's first count, 'others have' (or 'other has' for one) after another."""
    return ("other has" if n == 1 else "others have") if after else "of them have"


NAMED_NEW = 5  # photos to extract named in the plan's log line


class PackPlans:
    """The feature cache's extraction plan of each folder dataset, made once per DAG build from its lists
    (:meth:`DagLists.planning`) and the packs on disk (``stores.feature_cache.plan_extraction``), so that a dry run
    shows the extraction of the new or changed photos only; and what each planned pack job extracts.

    ``info``: called with the plan's log line (Snakemake's ``logger.info``); ``dryrun``: whether this build runs no
    job (a dry run records no pack plan: it left plans of configurations never run)."""

    def __init__(
        self, lists: DagLists, config: dict[str, Any], info: Callable[[str], None], dryrun: Callable[[], bool]
    ) -> None:
        self.lists, self.plan, self.config, self.info, self.dryrun = lists, lists.plan, config, info, dryrun
        self._plans: dict[tuple[str, str], tuple[str, Any, Lists | None]] = {}
        self._packs: dict[tuple[str, str], dict[str, Any]] = {}  # (xv, pack) -> {"items", "backbone", "config"}

    def extraction(self, ds: str, backbone: str, backbone_config: dict[str, Any]) -> tuple[str, Any, Lists | None]:
        """(xv, plan or None, lists or None) of a dataset's extraction from the cache, made once per DAG build; the
        plan is None where the lists cannot be built (their job says why)."""
        xv = self.plan.cache_key(backbone, backbone_config)
        key = (self.plan.canonical(ds), xv)
        if key not in self._plans:
            lists = self.lists.planning(ds)
            plan = None
            if lists is not None:
                ext = self.config["extract"]
                try:
                    index = fcache.load_index(self.plan.cache_dir(xv))
                except fcache.CacheError as e:
                    # Snakemake drops the error of an input function whose job's output exists, and found "nothing
                    # to be done" with the photos' changes unseen (helper-123's trial): said here in every case
                    # (once: every input function that asks for the plan tries again)
                    self.lists.warn_once("cache", ds, f"{e}; until then changes to {ds}'s photos are not seen")
                    mark_said(e)
                    raise
                try:
                    plan = fcache.plan_extraction(
                        lists,
                        index,
                        xv,
                        ext["n_chunks"],
                        ext["min_chunk_images"],
                        max_chunk_images=ext["max_chunk_images"],
                    )
                except Exception as e:  # noqa: BLE001 -- said (Snakemake would drop it, as above), then raised
                    self.lists.warn_once(
                        "plan",
                        ds,
                        f"{ds}: the extraction cannot be planned ({describe(e)}); until then changes to "
                        f"{ds}'s photos are not seen",
                    )
                    mark_said(e)
                    raise
                # what the plan hashed where a ctime had moved, kept for the next plan (a dry run too: it is a memo
                # of the files' bytes, not a plan)
                recorded = fcache.record_verified(self.plan.cache_dir(xv), index) == plan.n_verified
                for pack, items in plan.new_packs.items():
                    self._packs[(xv, pack)] = {"items": items, "backbone": backbone, "config": backbone_config}
                    self._record(xv, pack)
                self.info(self._summary(ds, xv, plan, lists, recorded))
                self._warn_resized(ds, plan, lists)
            self._plans[key] = (xv, plan, lists)
        return self._plans[key]

    def _warn_resized(self, ds: str, plan: Any, lists: Lists) -> None:
        """A warning naming the photos overwritten in place whose pixel size is not the one the lists read: their
        digest is of sizes and mtimes, which such a photo keeps, so the lists (and a query box clipped to the image)
        keep the old size (helper-124's trial); ``touch`` has them read again. Only those photos' headers are read."""
        if not plan.overwritten:
            return
        listed = {e["path"]: (e.get("width", 0), e.get("height", 0)) for s in ("db", "query") for e in lists[s]}
        resized = []
        for path in plan.overwritten:
            try:
                now = datasets.image_size(Path(path), self.config["max_image_pixels"])
            except (OSError, ValueError):  # its job names it
                continue
            if path in listed and tuple(listed[path]) != tuple(now):
                resized.append(f"{path} ({now[0]} x {now[1]}, listed as {listed[path][0]} x {listed[path][1]})")
        if resized:
            self.lists.warn_once(
                "resized",
                ds,
                f"{ds}: {len(resized)} photo(s) overwritten in place have another pixel size than the lists read: "
                f"{'; '.join(resized[:NAMED_NEW])}{' and more' if len(resized) > NAMED_NEW else ''}; the lists keep "
                "the old size (and a query box is clipped to it): touch them to have the lists read again",
            )

    def _summary(self, ds: str, xv: str, plan: Any, lists: Lists, recorded: bool = True) -> str:
        n = len({(e["path"], str(e.get("crop"))) for s in ("db", "query") for e in lists[s]})
        likely: list[str] = []
        # hashed while planning: known to hold other bytes, so not among the likely copies below
        over = (
            f"; {plan.n_rewritten} of them have the name, size, time and inode of a cached file, with other bytes: "
            "overwritten in place"
            if plan.n_rewritten
            else ""
        )
        told = [over] if over else []
        if plan.n_renamed:
            likely.append(
                f"{plan.n_renamed} {_others(plan.n_renamed, told)} the size and time of a cached "
                "file under another name (renamed, moved, or another dataset's name for it?)"
            )
        if plan.n_same_stat:
            likely.append(
                f"{plan.n_same_stat} {_others(plan.n_same_stat, told + likely)} the name, size and time of a cached file, "
                "but another inode (a copy made with cp -a, a photo swapped in, or a pack cached before "
                "2026-12-06)"
            )
        if plan.n_copied:
            likely.append(
                f"{plan.n_copied} {_others(plan.n_copied, told + likely)} the name and size of a cached file, "
                "with another time (touched, or a copied folder?)"
            )
        renamed = (
            f"; {'; '.join(likely)}: hashed first, they are copied, not extracted, when their content is cached"
            if likely
            else ""
        )
        memo = f"{self.plan.cache_dir(xv)}/{fcache.VERIFIED}"
        hashed = (
            f"; {plan.n_verified} photo(s) hashed while planning, their ctime having moved "
            + (f"(recorded in {memo})" if recorded else f"(not recorded: {memo} could not be written, see the warning)")
            if plan.n_verified  # the time a large chmod -R costs a build (helper-123)
            else ""
        )
        # nothing to extract for them, and yet their stores are merged again: said why, after the photos to extract
        served = sorted({lists[s][i]["name"] for s, moved in plan.displaced.items() for i, _ in moved})
        displaced = (
            f"; {len(served)} photo(s) hold bytes the cache has under another name or from before (overwritten in "
            f"place, or written back) and are served those rows: {', '.join(served[:NAMED_NEW])}"
            + (f" and {len(served) - NAMED_NEW} more" if len(served) > NAMED_NEW else "")
            if served
            else ""
        )
        # which photos: after an edit, "1 of 101" named none (the pack's .json only did; helper-119's trial)
        names = sorted({it["name"] for items in plan.new_packs.values() for it in items})
        more = f" and {len(names) - NAMED_NEW} more" if len(names) > NAMED_NEW else ""
        return (
            f"feature cache {self.plan.cache_dir(xv)}: {ds}: {plan.n_new} of {n} images (and query boxes) to extract, "
            f"in {len(plan.new_packs)} job(s){over}{renamed}"
            + (" (they run only for a store that is made again: the job list says which)" if plan.new_packs else "")
            + (f"; the images to extract: {', '.join(names[:NAMED_NEW])}{more}" if names else "")
            + displaced
            + hashed
        )

    @staticmethod
    def plan_path(xv: str, pack: str) -> str:
        """Where a planned pack's job is recorded (``results/features/{xv}/plans/{pack}.json``)."""
        return f"{FEATURES}/{xv}/plans/{pack}.json"

    def _record(self, xv: str, pack: str) -> None:
        """Record what a planned pack extracts (content-addressed: its name hashes it), for a job whose DAG is built
        again where it runs (a SLURM job re-plans after sibling packs finished, when this pack would no longer be
        grouped the same way)."""
        path = self.plan_path(xv, pack)
        if not self.dryrun() and not os.path.isfile(path):
            write_json(path, self._packs[(xv, pack)])

    def pack(self, xv: str, pack: str) -> dict[str, Any]:
        """What a pack job extracts (``{"items", "backbone", "config"}``): from this build's plan, else from the
        pack's sidecar when it exists (the same value, so Snakemake sees its parameters unchanged; packs are
        immutable and take no declared inputs: the images they were made from may since have moved), else from the
        plan recorded when it was planned. PlanError for a pack no configuration planned."""
        key = (xv, pack)
        if key not in self._packs:
            sidecar = f"{self.plan.cache_dir(xv)}/{pack}.json"
            if os.path.isfile(sidecar):
                self._packs[key] = fcache.pack_job(fcache.read_sidecar(sidecar))
            elif os.path.isfile(self.plan_path(xv, pack)):
                self._packs[key] = read_json(self.plan_path(xv, pack))
            else:
                raise PlanError(
                    f"{self.plan.cache_dir(xv)}/{pack}.h5 is not a pack the current configuration plans; request the "
                    "top-level results/{dataset}_{method}.json targets"
                )
        return self._packs[key]

"""The ``demo_data``, ``database_list`` and ``image_lists`` stages (with ``{dataset}+1m``'s): the demo dataset and
the image lists."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from retrieval.data.datasets import build_database_list, build_image_lists, list_files_read, with_distractors
from retrieval.data.demo import DemoConfig, generate_demo
from retrieval.data.images import DEFAULT_MAX_IMAGE_PIXELS
from retrieval.runtime import Manifest, read_json, write_json

log = logging.getLogger(__name__)

# EXIF thumbnails are 160 x 120: below this shorter side a photo is a thumbnail, and SIFT (the default settings)
# finds a few hundred features at most where it keeps 1000 of a photo (landmarks-mini photos scaled down, medians of
# 30: 287 at 160 pixels, 129 at 96, 68 at 64)
SMALL_SIDE = 160


def small_images(entries: list[dict[str, Any]], side: int = SMALL_SIDE) -> list[str]:
    """``"path (W x H)"`` of the list entries (``path``, ``width``, ``height`` in displayed pixels) whose shorter side
    is below ``side`` pixels; entries without a size (skipped images: no size, or 0 x 0 under ``on_bad_image:
    skip``, named as unreadable already) are not counted."""
    out = []
    for e in entries:
        w, h = e.get("width"), e.get("height")
        if isinstance(w, int) and isinstance(h, int) and 0 < min(w, h) < side:
            out.append(f"{e['path']} ({w} x {h})")
    return out


def warn_small_images(dataset: str, entries: list[dict[str, Any]]) -> None:
    """Warn, naming the first five, of the list ``entries`` that are thumbnails (``small_images``): they get a ranking
    like any other, from few local features (a new user's 96-pixel thumbnail did not find its own photo at rank 1)."""
    small = small_images(entries)
    if small:
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        log.warning(
            "%s: %d image(s) smaller than %d pixels on their shorter side (thumbnails?): too little detail to "
            "describe them reliably (SIFT, the default backbone, finds about 290 local features in a 160-pixel "
            "photo, where it keeps 1000 of a full one; a deep backbone enlarges them), so their rankings are "
            "unreliable: %s%s",
            dataset,
            len(small),
            SMALL_SIDE,
            ", ".join(small[:5]),
            more,
        )


def make_demo(out_dir: str | Path, demo_config: dict[str, Any], version: str, preset: str, workers: int = 1) -> None:
    """The demo's splits generated into ``out_dir`` (``results/demo_data/{version}``), written under
    ``{version}.part`` and renamed when whole. This version's ``.part`` that an earlier run left (killed outright)
    is removed first, and this job's own when it fails or is interrupted (Ctrl-C). Other versions' are left alone:
    another run in the same directory may be writing one (Snakemake locks only the files a run writes)."""
    out_dir = Path(out_dir)
    m = Manifest("demo_data", version, demo_config, preset)
    tmp = out_dir.with_name(out_dir.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = generate_demo(tmp, DemoConfig.from_dict(demo_config), workers)
    except BaseException:  # KeyboardInterrupt and SystemExit included
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # the folder appears complete or not at all
    m.write(out_dir / "manifest.json", summary=summary)


def make_database_list(
    dataset_dir: str | Path,
    dataset: str,
    out_db: str | Path,
    out_manifest: str | Path,
    version: str,
    preset: str,
    on_bad_image: str = "error",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> None:
    """The database list of a plain folder or a gnd.csv dataset (``db.json``: see ``build_database_list``); its
    manifest records the list files it was read from (:func:`list_files_read`, taken before the listing), so that
    the workflow's plan sees one removed."""
    m = Manifest(
        "database_list",
        version,
        {"dataset": dataset, "on_bad_image": on_bad_image, "max_image_pixels": max_image_pixels},
        preset,
    )
    list_files = list_files_read(dataset_dir, dataset, database=True)  # before: a file removed meanwhile counts
    db = build_database_list(dataset_dir, dataset, on_bad_image, max_image_pixels)
    log.info("%s: %d database images", dataset, len(db["db"]))
    warn_small_images(dataset, db["db"])
    write_json(out_db, db)
    m.write(
        out_manifest,
        outputs=[out_db],
        n_db=len(db["db"]),
        skipped_images=db.get("skipped", []),
        list_files=list_files,
    )


def make_image_lists(
    dataset_dir: str | Path,
    dataset: str,
    crop_queries: bool,
    out_lists: str | Path,
    out_gnd: str | Path,
    out_manifest: str | Path,
    version: str,
    preset: str,
    on_bad_image: str = "error",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    gldv2: dict[str, Any] | None = None,
    database: str | Path | None = None,
) -> None:
    """``lists.json`` and ``gnd.json``; ``database``: the ``database_list`` rule's ``db.json`` where the database is
    listed apart (its entries are used as they are). The manifest records the folder's list files
    (:func:`list_files_read`, taken before the lists are built), so that the workflow's plan sees one removed
    (query_boxes.csv)."""
    m = Manifest(
        "image_lists",
        version,
        {
            "dataset": dataset,
            "crop_queries": crop_queries,
            "on_bad_image": on_bad_image,
            "max_image_pixels": max_image_pixels,
            "gldv2": gldv2,
        },
        preset,
    )
    if database is not None:
        m.add_input("database", database)
    db = read_json(database) if database is not None else None
    list_files = list_files_read(dataset_dir, dataset)  # before the build: a file removed meanwhile counts
    lists, gt = build_image_lists(dataset_dir, dataset, crop_queries, on_bad_image, max_image_pixels, gldv2, db)
    # each file once: the database's (named by database_list where it listed them), then queries that are not in it
    in_db = {e["path"] for e in lists["db"]}
    queries = [q for q in lists["query"] if q["path"] not in in_db]
    warn_small_images(dataset, (lists["db"] if db is None else []) + queries)
    if gt is not None:
        m.add_input("ground_truth", gt.source)
    write_json(out_lists, lists)
    write_json(out_gnd, gt.to_json() if gt is not None else None)
    m.write(
        out_manifest,
        outputs=[out_lists, out_gnd],
        n_db=len(lists["db"]),
        n_queries=len(lists["query"]),
        skipped_images=lists.get("skipped", []),
        list_files=list_files,
    )


def make_lists_with_distractors(
    base_lists: str | Path,
    base_gnd: str | Path,
    distractor_lists: str | Path,
    dataset: str,
    out_lists: str | Path,
    out_gnd: str | Path,
    out_manifest: str | Path,
    version: str,
    preset: str,
    input_versions: dict[str, str],
) -> None:
    """``{dataset}+1m``: the dataset's lists with the distractor set's database appended (see ``with_distractors``)."""

    m = Manifest(
        "image_lists", version, {"dataset": dataset, "distractors": read_json(distractor_lists)["dataset"]}, preset
    )
    for role, path in (("base_lists", base_lists), ("base_gnd", base_gnd), ("distractor_lists", distractor_lists)):
        m.add_input(role, path, version=input_versions[role.split("_")[0]])
    lists, gnd = with_distractors(read_json(base_lists), read_json(base_gnd), read_json(distractor_lists), dataset)
    write_json(out_lists, lists)
    write_json(out_gnd, gnd)
    log.info(
        "%s: %d database images (%s) + %d distractors, %d queries",
        dataset,
        lists["parts"][0]["rows"],
        lists["parts"][0]["dataset"],
        lists["parts"][1]["rows"],
        len(lists["query"]),
    )
    m.write(
        out_manifest,
        outputs=[out_lists, out_gnd],
        n_db=len(lists["db"]),
        n_queries=len(lists["query"]),
        parts=lists["parts"],
        skipped_images=lists.get("skipped", []),
    )

"""The ``demo_data``, ``image_lists`` and ``image_lists_1m`` stages: the demo dataset and the image lists."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from retrieval.data.datasets import build_image_lists, with_distractors
from retrieval.data.demo import DemoConfig, generate_demo
from retrieval.data.images import DEFAULT_MAX_IMAGE_PIXELS
from retrieval.runtime import Manifest, read_json, write_json

log = logging.getLogger(__name__)


def make_demo(out_dir: str | Path, demo_config: dict[str, Any], version: str, preset: str, workers: int = 1) -> None:

    out_dir = Path(out_dir)
    m = Manifest("demo_data", version, demo_config, preset)
    tmp = out_dir.with_name(out_dir.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    summary = generate_demo(tmp, DemoConfig.from_dict(demo_config), workers)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # the folder appears complete or not at all
    m.write(out_dir / "manifest.json", summary=summary)


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
) -> None:

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
    lists, gt = build_image_lists(dataset_dir, dataset, crop_queries, on_bad_image, max_image_pixels, gldv2)
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

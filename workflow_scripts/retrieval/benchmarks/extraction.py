"""Deep extraction's throughput (rule benchmark_extract), apart from ``throughput``'s AMES, sv and grid timings so
that those import no image decoding or backbone (they run where torch, h5py, OpenCV and threadpoolctl are installed,
without Snakemake, faiss, asmk or pillow-heif)."""

from __future__ import annotations

import time
from typing import Any

import torch

from retrieval.data.images import load_bgr
from retrieval.features.deep import DeepConfig, DeepExtractor
from retrieval.runtime import read_json, write_json


def extraction_throughput(
    image_paths: list[str], backbone: str, backbone_config: dict[str, Any], repeats: int = 1
) -> dict[str, Any]:
    """Images per second of deep extraction (decode, resize, forward, detector, top-k, global) on real images, one
    image at a time as the extraction rule runs; the first image is a warm-up and not timed."""

    ex = DeepExtractor(DeepConfig.from_dict(backbone, backbone_config), f"benchmark.extract.{backbone}.device")
    ex.extract(load_bgr(image_paths[0]))
    sync = torch.cuda.synchronize if ex.device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        for p in image_paths:
            ex.extract(load_bgr(p))
    sync()
    seconds = time.perf_counter() - t0
    n = repeats * len(image_paths)
    return {
        "backbone": backbone,
        "model": backbone_config.get("model"),
        "weights": ex.source,
        "image_size": backbone_config.get("image_size"),
        "scales": backbone_config.get("scales"),
        "device": ex.device,
        "device_name": torch.cuda.get_device_name(0) if ex.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "images": n,
        "seconds": round(seconds, 3),
        "images_per_second": round(n / seconds, 3),
    }


def extraction_benchmark(lists_path: str, cfg: dict[str, Any], out_path: str) -> dict[str, Any]:
    """Rule benchmark_extract: :func:`extraction_throughput` of ``cfg["backbone"]`` on the first ``cfg["images"]``
    database images of ``lists_path`` (the demo's real-size photos), written as JSON to ``out_path`` and returned."""
    paths = [e["path"] for e in read_json(lists_path)["db"][: cfg["images"]]]
    result = extraction_throughput(paths, cfg["backbone"], cfg[cfg["backbone"]], cfg["repeats"])
    write_json(out_path, result)
    return result

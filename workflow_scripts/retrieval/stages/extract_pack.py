"""Rule extract_pack: hash and extract the photos of one feature-cache pack (see stores/feature_cache.py), in order; a
key already in the cache (the same bytes and box under another name) has its row copied instead of extracted."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retrieval.data.images import DEFAULT_MAX_IMAGE_PIXELS, NO_READ_PERMISSION, BadImageError, decode_image
from retrieval.features import sift
from retrieval.features.reduced import extract_reduced
from retrieval.runtime import fault_point, is_readable, write_json
from retrieval.stores.feature_cache import (
    CacheError,
    crop_key,
    file_sha256,
    item_stat,
    load_index,
    missing_key,
    pack_id,
    pack_sidecar,
    read_pack_row,
    skipped_reason_for,
    stat_of,
)
from retrieval.stores.local_store import write_local_chunk

log = logging.getLogger(__name__)
_NOT_FOUND = "image listed but not found: "
_SINCE_PLANNED = (
    "removed, renamed or changed while the workflow ran, or before an interrupted run was resumed with "
    "--rerun-incomplete, which re-runs a pack as it was first planned"
)


def _absent_reason(path: str) -> str:
    """Why a planned item without a size (stat_of: -1) has no bytes: missing, or there but not readable (no read
    permission on it, or no search permission on a folder above it)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "image listed but not found"
    except PermissionError:
        return NO_READ_PERMISSION
    return "image listed but not found" if is_readable(path) else NO_READ_PERMISSION


def _runner(backbone: str, backbone_config: dict[str, Any]):
    """(run(pixels, entry, crop) -> (row, global or None), K, dim, colour, extra attributes, global dim)."""
    if backbone == "sift":
        cfg = sift.SiftConfig(**backbone_config)

        def run(img, e, crop):
            return (sift.extract_sift(img, cfg, crop) if img.size else sift.empty_features(cfg, e)), None

        return run, cfg.k, sift.DIM, "gray", {}, 0
    if backbone in ("dinov2", "resnet"):
        # imported here: torch costs 2-3 s per job, and SIFT chunks (most jobs) do not need it
        from retrieval.features.deep import DeepConfig, DeepExtractor  # noqa: PLC0415

        extractor = DeepExtractor(DeepConfig.from_dict(backbone, backbone_config))

        def run(img, e, crop):
            return extractor.extract(img, crop) if img.size else extractor.empty(e)

        log.info("%s: %s", backbone, extractor.describe())
        return (
            run,
            extractor.cfg.k,
            extractor.local_dim,
            "bgr",
            {"model": json.dumps(extractor.describe())},
            extractor.global_dim,
        )
    raise ValueError(f"feature cache: backbone {backbone!r} is not extracted from images (sift, dinov2, resnet)")


def extract_pack(
    items: Sequence[dict[str, Any]],
    out_h5: str | os.PathLike,
    out_index: str | os.PathLike,
    xv: str,
    backbone: str,
    backbone_config: dict[str, Any],
    on_bad_image: str = "error",
    max_image_pixels: int | None = None,
    run_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Hash and extract the items of one pack (in order), with ``run_config`` (default ``backbone_config``, the
    configuration as planned, which the sidecar records: a deep backbone's weights files by their SHA-1; the
    extractor gets their paths and the device in ``run_config``, ``stages.extract.job_backbone_config``); a key
    already in the cache (the same bytes and box under another name) has its row copied instead (extracted, with a warning naming the pack, when that pack's ``.h5`` is
    damaged), and so does a key met earlier in this job (two copies or links of one photo, both new: each was
    extracted, helper-137). Writes the .h5, then the sidecar. Returns counts and timings.

    Under ``on_bad_image: error`` a missing or unreadable image does not stop the job at once: the other items are
    still extracted, written to the cache as a pack of their own (named by a hash of those items, so the next plan
    finds them and extracts only what is left), and then ``BadImageError`` (a ``ValueError``) is raised, starting
    with the first bad file's path and naming every bad file of the pack (``FileNotFoundError`` when every bad
    image is a missing file). A photo removed, renamed, changed (size or mtime) or made unreadable
    since the plan is such a bad item under either mode, its message saying so: ``FileNotFoundError`` when all of
    them are gone, ``CacheError`` when only changed photos are bad (the next run plans them as they are)."""
    max_image_pixels = max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS
    out_h5, out_index = Path(out_h5), Path(out_index)
    t0 = time.time()
    index = load_index(out_h5.parent, memo=False)  # rows looked up by their bytes: the planning's memo unused
    run_config = backbone_config if run_config is None else run_config
    run, k, dim, colour, extra, global_dim = _runner(backbone, run_config)
    # the sidecar records the configuration as planned (pack_job gives it back as the job's params), and the device
    backbone_config = {**backbone_config, **({"device": run_config["device"]} if "device" in run_config else {})}
    rows, globals_, shas, skipped = [], [], [], {}
    kept: list[int] = []  # items with a row (all of them unless a bad image stops the job)
    made: dict[tuple[str, Any], int] = {}  # (SHA-256, crop) -> its row in ``rows``: a duplicate in the job is copied
    bad: list[str] = []  # under on_bad_image: error, what was wrong with each bad image
    n_copied = n_extracted = n_unreadable = 0
    stale = 0  # bad items that only changed since the plan: the next run plans them as they are
    t_hash = 0.0
    for i, it in enumerate(items):
        crop = crop_key(it["crop"])
        if it["size"] < 0:
            if on_bad_image != "skip":
                absent = _absent_reason(it["path"])
                bad.append(f"{it['path']}: {absent}" if absent == NO_READ_PERMISSION else f"{_NOT_FOUND}{it['path']}")
                continue
            sha = missing_key(it["name"])
        else:
            # a photo removed, renamed, replaced or made unreadable since the plan (while the workflow ran, or before
            # a --rerun-incomplete re-ran an interrupted pack with the plan of its first run): named with the others
            # at the end, and the rest of the pack is kept (it stopped the job at once, losing the pack's work)
            th = time.time()
            try:
                sha = file_sha256(it["path"])
            except FileNotFoundError:
                bad.append(f"{_NOT_FOUND}{it['path']} (there when the workflow planned this job: {_SINCE_PLANNED})")
                stale += 1
                continue
            except PermissionError as e:  # made unreadable after the plan, or a file system os.access misjudges
                bad.append(
                    f"{it['path']}: {NO_READ_PERMISSION} ({e.strerror}), though it was readable when the workflow "
                    "planned this job; give it read permission or remove it"
                )
                continue
            t_hash += time.time() - th
            # size and mtime, not the inode: a SLURM job may see the file through another mount than the planning
            # did, and some (CIFS with noserverino, FUSE without use_ino) number inodes per mount; the row is keyed
            # by the bytes hashed here either way
            now, planned = stat_of(it["path"])[:2], item_stat(it)[:2]
            if now != planned:
                bad.append(
                    f"{it['path']} changed after the workflow planned this job (size, mtime_ns {now}, planned "
                    f"{planned}): {_SINCE_PLANNED}"
                )
                stale += 1
                continue
        earlier = made.get((sha, crop)) if it["size"] >= 0 else None
        if earlier is not None:  # the same bytes (and box) earlier in this job: a copy or a link, extracted once
            if str(kept[earlier]) in skipped:
                skipped[str(i)] = skipped[str(kept[earlier])]
            kept.append(i)
            shas.append(sha)
            rows.append(rows[earlier])
            globals_.append(globals_[earlier])
            n_copied += 1
            continue
        hit = index.by_key.get((sha, crop))
        reason = None if hit is None else index.packs[hit[0]].get("skipped", {}).get(str(hit[1]))
        if reason is not None and on_bad_image != "skip":  # the same bytes were unreadable under another name
            err = f"{it['path']}: the same bytes were found unreadable before, under on_bad_image: skip ({reason})"
            log.error("%s", err)
            bad.append(err)
            continue
        copied = None
        if hit is not None:
            try:
                copied = read_pack_row(out_h5.parent / f"{hit[0]}.h5", hit[1])
            except CacheError as e:  # a damaged pack: this photo's row is extracted again instead
                log.warning("%s: extracted instead of copied: %s", it["path"], e)
        if copied is not None:
            row, g = copied
            if reason is not None:  # still without features: merge_local and the manifests say so, of this file
                skipped[str(i)] = skipped_reason_for(it["path"], reason, index.packs[hit[0]]["rows"]["path"][hit[1]])
            n_copied += 1
        else:
            decoded = None
            if it["size"] >= 0:
                try:
                    decoded = decode_image(it["path"], colour, max_image_pixels)
                except BadImageError as err:
                    if on_bad_image != "skip":
                        log.error("%s", err)
                        bad.append(str(err))
                        continue
                    log.warning("on_bad_image: skip: %s gets no features (%s)", it["path"], err)
                    skipped[str(i)] = str(err)
            else:
                skipped[str(i)] = _absent_reason(it["path"])
            entry = {"path": it["path"], "width": it.get("width", 0), "height": it.get("height", 0)}
            if decoded is None:
                row, g = run(np.zeros((0, 0), np.uint8), entry, None if crop is None else list(crop))
            elif decoded.factor == (1.0, 1.0):
                row, g = run(decoded.pixels, entry, None if crop is None else list(crop))
            else:
                row, g = extract_reduced(run, decoded, entry, None if crop is None else list(crop), backbone)
            n_extracted += 1
            n_unreadable += decoded is None
        kept.append(i)
        shas.append(sha)
        rows.append(row)
        globals_.append(g)
        made.setdefault((sha, crop), len(rows) - 1)
        if i == len(items) // 2:
            fault_point("extract")
        if (i + 1) % 100 == 0 or i + 1 == len(items):
            log.info("pack %s: %d/%d images, %.1f img/s", out_h5.stem, i + 1, len(items), (i + 1) / (time.time() - t0))
    global_desc = None
    if backbone != "sift":
        global_desc = np.stack(globals_) if globals_ else np.zeros((0, global_dim), np.float32)
    seconds = time.time() - t0
    write = dict(xv=xv, backbone=backbone, backbone_config=backbone_config, k=k, dim=dim, extra=extra)
    # the sidecar's "extracted" counts the rows the extractor produced, an unreadable photo's empty row included (the
    # log line below counts it apart)
    counts = dict(extracted=n_extracted, copied=n_copied, seconds=round(seconds, 3), hash_seconds=round(t_hash, 3))
    if bad:
        # keep what was computed: the good items become a pack of their own, which the next plan finds
        good = [items[i] for i in kept]
        note = "no other image of this job was extracted"
        if good:
            pack = pack_id(xv, good)
            _write_pack(out_h5.parent / f"{pack}.h5", good, rows, global_desc, shas, {}, counts, **write)
            note = f"the features of the other {len(good)} image(s) of this job are kept in the feature cache ({pack})"
        error = FileNotFoundError if all(b.startswith(_NOT_FOUND) for b in bad) else BadImageError
        if stale == len(bad):
            error = FileNotFoundError if error is FileNotFoundError else CacheError
            raise error(
                "\n".join(bad)
                + f"\n({len(bad)} image(s) of {len(items)} in this job changed since the workflow planned it; {note}: "
                "run snakemake again, which plans the folder as it is now)"
            )
        raise error(
            "\n".join(bad)
            + f"\n({len(bad)} bad image(s) of {len(items)} in this job; {note}: remove or replace the file(s), or set "
            "on_bad_image: skip, and run again)"
        )
    meta = _write_pack(out_h5, items, rows, global_desc, shas, skipped, counts, index_path=out_index, **write)
    log.info(
        "pack %s: %d images, %d extracted, %d found in the cache by their bytes (renamed, moved or only touched)%s; "
        "%.1f s (hashing %.2f s)",
        out_h5.stem,
        len(items),
        n_extracted - n_unreadable,
        n_copied,
        f", {n_unreadable} without features (unreadable or missing; on_bad_image: skip)" if n_unreadable else "",
        seconds,
        t_hash,
    )
    return meta


def _write_pack(
    out_h5: Path,
    items: Sequence[dict[str, Any]],
    rows: list[dict[str, Any]],
    global_desc: np.ndarray | None,
    shas: Sequence[str],
    skipped: dict[str, str],
    counts: dict[str, Any],
    *,
    xv: str,
    backbone: str,
    backbone_config: dict[str, Any],
    k: int,
    dim: int,
    extra: dict[str, Any],
    index_path: Path | None = None,
) -> dict[str, Any]:
    """Write a pack: its .h5 (one row per item), then its sidecar (``index_path``, default ``{pack}.json`` next to
    it), which makes it part of the cache. Returns the sidecar."""
    write_local_chunk(
        out_h5,
        rows,
        k=k,
        dim=dim,
        backbone=backbone,
        row_start=0,
        n_total=len(rows),
        extra_attrs={
            "version": xv,
            "pack": out_h5.stem,
            "skipped": json.dumps([{"path": items[int(i)]["path"], "reason": r} for i, r in skipped.items()]),
            "seconds": counts["seconds"],
            **extra,
        },
        global_desc=global_desc,
    )
    meta = pack_sidecar(items, shas, xv, out_h5.stem, backbone, backbone_config, skipped, **counts)
    write_json(index_path or out_h5.with_suffix(".json"), meta)
    return meta

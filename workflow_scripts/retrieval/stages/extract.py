"""The ``extract_local`` and ``merge_local`` stages: local features per chunk of images, and the
verified virtual merge of the chunks."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from retrieval.data.images import DEFAULT_MAX_IMAGE_PIXELS, BadImageError, decode_image
from retrieval.features import sift
from retrieval.features.reduced import extract_reduced
from retrieval.runtime import Manifest, check_recorded, fault_point, file_sha1, read_lists
from retrieval.stores.ames_release import convert_rows, n_rows, read_rows, release_file
from retrieval.stores.feature_cache import assemble_store
from retrieval.stores.local_store import StoreError, merge_local_chunks, rows_from_chunks, write_local_chunk

log = logging.getLogger(__name__)


def chunk_rows(n: int, chunk: int, n_chunks: int) -> tuple[int, int]:
    """Rows [start, stop) of chunk ``chunk`` when n rows are split into n_chunks near-equal contiguous parts."""
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"chunk {chunk} outside 0..{n_chunks - 1}")
    return n * chunk // n_chunks, n * (chunk + 1) // n_chunks


def shared_query_rows(lists: dict[str, Any]) -> dict[int, int]:
    """Queries whose pixels are a database image's: ``{query row: db row}`` for every query without a crop box
    whose file is listed in the database (a plain folder without query lists, or ``crop_queries: false``)."""
    db_row = {e["path"]: i for i, e in enumerate(lists["db"])}
    return {i: db_row[q["path"]] for i, q in enumerate(lists["query"]) if q.get("crop") is None and q["path"] in db_row}


def job_backbone_config(backbone: str, params_config: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The backbone configuration an extraction job runs with: its params (``Plan.extraction_params``), with what
    they leave out taken from the workflow's configuration: ``extract.{backbone}.device`` for a deep backbone, and
    for every weights file the params give as ``{"sha1": ...}``, the path ``extract.{backbone}.{key}`` names.
    ValueError naming the key where the configuration no longer names a file of the planned SHA-1 (saved over,
    moved or renamed since the workflow planned the job: run again, and new weights get their own version)."""
    section = config["extract"].get(backbone)
    out = dict(params_config)
    if not isinstance(section, dict):
        return out
    if "device" in section:
        out["device"] = section["device"]
    for key, value in params_config.items():
        if isinstance(value, dict) and set(value) == {"sha1"}:
            named = section.get(key)
            path = Path(named).expanduser() if isinstance(named, str) else None
            if path is None or not path.is_file() or file_sha1(path) != value["sha1"]:
                # saved over, moved, or the key changed while the job waited (a queued SLURM job, say)
                raise ValueError(
                    f"extract.{backbone}.{key}: {named} is not the file this job was planned with (SHA-1 "
                    f"{value['sha1']}); it was saved over, moved or renamed meanwhile: run the workflow again"
                )
            out[key] = named
    return out


def extract_local_chunk(
    lists_path: str | Path,
    split: str,
    chunk: int,
    n_chunks: int,
    out_path: str | Path,
    backbone: str,
    backbone_config: dict[str, Any],
    version: str,
    on_bad_image: str = "error",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    db_chunks: Sequence[str | Path] = (),
) -> None:
    """Local features (and, for deep backbones, global descriptors) of one contiguous chunk of the ``db`` or
    ``query`` list. Images are decoded as displayed (data/images.py); query boxes are in displayed coordinates, so the
    crop is taken on the EXIF-transposed image. A JPEG reduced while decoding (over ``max_image_pixels``) has its
    box scaled down and its keypoints mapped back to full-image pixels. A query chunk given the database's chunks
    (``db_chunks``, same extraction version) copies the rows of queries that are uncropped database images
    (:func:`shared_query_rows`) instead of extracting them again; the copied rows are the database rows exactly."""

    if backbone not in ("sift", "dinov2", "resnet", "ames_import"):
        raise ValueError(
            f"extract.backbone: unknown backbone {backbone!r} (available: sift, dinov2, resnet, ames_import)"
        )
    lists = read_lists(lists_path)
    entries = lists[split]
    start, stop = chunk_rows(len(entries), chunk, n_chunks)
    if backbone == "ames_import":
        import_ames_chunk(lists, split, start, stop, out_path, backbone_config, version)
        return
    if backbone == "sift":
        cfg = sift.SiftConfig(**backbone_config)
        k, dim, colour = cfg.k, sift.DIM, "gray"

        def run(img, e, crop):
            return (sift.extract_sift(img, cfg, crop) if img.size else sift.empty_features(cfg, e)), None

        extra: dict[str, Any] = {}
    else:
        # imported here: torch costs 2-3 s per job, and SIFT chunks (most jobs) do not need it
        from retrieval.features.deep import DeepConfig, DeepExtractor  # noqa: PLC0415

        extractor = DeepExtractor(DeepConfig.from_dict(backbone, backbone_config))
        k, dim, colour = extractor.cfg.k, extractor.local_dim, "bgr"

        def run(img, e, crop):
            return extractor.extract(img, crop) if img.size else extractor.empty(e)

        extra = {"model": json.dumps(extractor.describe())}
        log.info("%s: %s", backbone, extractor.describe())
    rows, globals_ = [], []
    skipped: list[dict[str, str]] = []
    t0 = time.time()
    shared = (
        {q: d for q, d in shared_query_rows(lists).items() if start <= q < stop}
        if split == "query" and db_chunks
        else {}
    )
    copied: dict[int, tuple[dict[str, np.ndarray], np.ndarray | None]] = {}
    if shared:
        order = sorted(shared)
        got, got_g = rows_from_chunks(db_chunks, [shared[q] for q in order])
        copied = {q: (r, None if got_g is None else got_g[j]) for j, (q, r) in enumerate(zip(order, got))}

        db_skipped = set()
        for p in db_chunks:
            with h5py.File(p, "r") as f:
                db_skipped |= {x["path"] for x in json.loads(f.attrs.get("skipped", "[]"))}
        skipped += [
            {"path": entries[q]["path"], "reason": "no features in the database row it shares"}
            for q in order
            if entries[q]["path"] in db_skipped
        ]
        log.info(
            "%s query chunk %d: %d of %d queries are uncropped database images: their database rows are "
            "copied, not extracted again",
            lists["dataset"],
            chunk,
            len(shared),
            stop - start,
        )
    for i, e in enumerate(entries[start:stop]):
        if start + i in copied:
            row, g = copied[start + i]
            rows.append(row)
            globals_.append(g)
            continue
        crop = e.get("crop") if split == "query" else None
        try:
            decoded = decode_image(e["path"], colour, max_image_pixels)
        except BadImageError as err:
            if on_bad_image != "skip":
                raise
            log.warning("on_bad_image: skip: %s gets no features (%s)", e["path"], err)
            skipped.append({"path": e["path"], "reason": str(err)})
            decoded = None
        if decoded is None:
            row, g = run(np.zeros((0, 0), np.uint8), e, crop)
        elif decoded.factor == (1.0, 1.0):
            row, g = run(decoded.pixels, e, crop)
        else:
            row, g = extract_reduced(run, decoded, e, crop, backbone)
        rows.append(row)
        globals_.append(g)
        if i == (stop - start) // 2:
            fault_point("extract")
        if (i + 1) % 100 == 0 or i + 1 == stop - start:
            log.info(
                "%s %s chunk %d: %d/%d images, %.1f img/s",
                lists["dataset"],
                split,
                chunk,
                i + 1,
                stop - start,
                (i + 1) / (time.time() - t0),
            )
    global_desc = None
    if backbone != "sift":
        global_desc = np.stack(globals_) if globals_ else np.zeros((0, extractor.global_dim), np.float32)
    write_local_chunk(
        out_path,
        rows,
        k=k,
        dim=dim,
        backbone=backbone,
        row_start=start,
        n_total=len(entries),
        extra_attrs={
            "version": version,
            "split": split,
            "skipped": json.dumps(skipped),
            "seconds": time.time() - t0,
            **extra,
        },
        global_desc=global_desc,
    )


def import_ames_chunk(
    lists: dict[str, Any], split: str, start: int, stop: int, out_path: str | Path, cfg: dict[str, Any], version: str
) -> None:
    """Rows [start, stop) of an AMES release file as a local-store chunk (see stores/ames_release.py)."""

    if not cfg.get("dir"):
        raise ValueError("extract.ames_import.dir: the folder holding {dataset}/{desc}_{gallery,query}_local.hdf5")
    path = release_file(cfg["dir"], lists["dataset"], cfg["desc"], split)
    if not path.is_file():
        raise FileNotFoundError(f"AMES release file not found: {path}")
    check_recorded(path, sha1=start == 0)  # an exported folder's record: the whole file hashed once, by the first chunk
    n, _, dim = n_rows(path)
    if n != len(lists[split]):
        raise ValueError(f"{path}: {n} rows but the {split} list of {lists['dataset']} has {len(lists[split])} images")
    meta, desc, packed = read_rows(path, start, stop)
    rows = convert_rows(path, meta, desc, lists[split][start:stop], int(cfg["k"]), cfg["positions"], start, packed)
    write_local_chunk(
        out_path,
        rows,
        k=int(cfg["k"]),
        dim=dim,
        backbone="ames_import",
        row_start=start,
        n_total=len(lists[split]),
        extra_attrs={"version": version, "split": split, "skipped": "[]", "source": str(path)},
    )


def _store_name(lists: dict[str, Any], split: str) -> str:
    """How the warnings name a store: the dataset's name for its database (a collection's, or the photos searched
    against one), ``{dataset} (query)`` for its queries: a run that indexed a collection and searched a folder of
    photos said "image(s) of db" for both, then "photos (db)" for the searched folder (new users' trials). A
    database listed apart (``db.json``) does not say whether the dataset has queries, so the database side is
    named the same way whatever it has."""
    if not lists.get("dataset"):
        return split
    return f"{lists['dataset']} (query)" if split == "query" else str(lists["dataset"])


MAX_NAMED_WITHOUT_FEATURES = 1000  # the merge manifest names at most this many (a blank distractor set: a count)


def _without_features(
    store: str | Path, entries: Sequence[dict[str, Any]], where: str, skipped: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The images of a merged store that got no local descriptors (its ``count`` 0: blank, tiny or featureless
    photos, and those skipped as unreadable): ``{"n_without_features", "images_without_features"}`` (names in list
    order, the first MAX_NAMED_WITHOUT_FEATURES), logged when there are any, in one warning that counts the
    ``skipped`` among them (two warnings named the same skipped file). They are never a match; a new user's trial
    found a 1x1 photo only as a count in the results."""
    with h5py.File(store, "r") as f:
        rows = np.flatnonzero(f["count"][:] == 0)
    names = [entries[int(i)]["name"] for i in rows[:MAX_NAMED_WITHOUT_FEATURES]]
    if len(rows):
        log.warning(
            "%d image(s) of %s have no local features (never a match; the manifest names them%s): %s%s",
            len(rows),
            where,
            f"; {len(skipped)} of them skipped as unreadable, on_bad_image: skip" if skipped else "",
            names[:5],
            " ..." if len(rows) > 5 else "",
        )
    return {"n_without_features": int(len(rows)), "images_without_features": names}


def merge_local(
    chunk_paths: Sequence[str | Path],
    lists_path: str | Path,
    split: str,
    out_path: str | Path,
    manifest_path: str | Path,
    version: str,
    config: dict[str, Any],
    preset: str,
    lists_version: str,
    groups: Sequence[int] | None = None,
    cache: dict[str, str] | None = None,
    on_bad_image: str = "error",
) -> None:
    """The virtual store of a split; ``groups`` (chunks per part) when the split stacks several extractions
    (``{dataset}+1m``: the dataset's database, then the distractors'); ``cache`` ({"xv", "dir"}) when the chunks are
    feature-cache packs (stores/feature_cache.py: rows mapped by content, in list order)."""

    m = Manifest("extract", version, config, preset, split=split)
    m.add_input("lists", lists_path, version=lists_version)
    lists = read_lists(lists_path)
    n = len(lists[split])
    where = _store_name(lists, split)
    if cache is not None:
        info = assemble_store(lists, split, cache["dir"], chunk_paths, out_path, cache["xv"], on_bad_image)
        skipped = info.pop("skipped")
        log.info(
            "%s %s: %d rows from %d feature-cache pack(s) in %d contiguous run(s)",
            lists["dataset"],
            split,
            n,
            info["n_chunks"],
            info["n_runs"],
        )
        none = _without_features(out_path, lists[split], where, skipped)
        m.write(manifest_path, outputs=[out_path, *chunk_paths], store=info, skipped_images=skipped, **none)
        return
    info = merge_local_chunks(chunk_paths, out_path, n, groups)
    if split == "db" and "parts" in lists and info["parts"] != [p["rows"] for p in lists["parts"]]:
        raise StoreError(
            f"{out_path}: parts of {info['parts']} rows but {lists_path} stacks "
            f"{[(p['dataset'], p['rows']) for p in lists['parts']]}"
        )

    skipped = []
    for p in chunk_paths:
        with h5py.File(p, "r") as f:
            skipped += json.loads(f.attrs.get("skipped", "[]"))
    none = _without_features(out_path, lists[split], where, skipped)
    m.write(manifest_path, outputs=[out_path, *chunk_paths], store=info, skipped_images=skipped, **none)

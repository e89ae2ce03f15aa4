"""The stages of the workflow as plain functions with explicit arguments.

Each reads only the files it is given, writes its outputs atomically and its ``manifest.json`` last.
The per-rule entry points in ``workflow_scripts/`` call these with values from the ``snakemake`` object;
they can equally be called by hand or from tests.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .images import DEFAULT_MAX_IMAGE_PIXELS
from .runtime import Manifest, atomic_path, fault_point, read_json, write_json

log = logging.getLogger(__name__)


def chunk_rows(n: int, chunk: int, n_chunks: int) -> tuple[int, int]:
    """Rows [start, stop) of chunk ``chunk`` when n rows are split into n_chunks near-equal contiguous parts."""
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"chunk {chunk} outside 0..{n_chunks - 1}")
    return n * chunk // n_chunks, n * (chunk + 1) // n_chunks


# ---------------------------------------------------------------------------------------------- demo


def make_demo(out_dir: str | Path, demo_config: dict[str, Any], version: str, preset: str) -> None:
    from .demo import DemoConfig, generate_demo  # noqa: PLC0415

    out_dir = Path(out_dir)
    m = Manifest("demo_data", version, demo_config, preset)
    tmp = out_dir.with_name(out_dir.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    summary = generate_demo(tmp, DemoConfig.from_dict(demo_config))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # the folder appears complete or not at all
    m.write(out_dir / "manifest.json", summary=summary)


# --------------------------------------------------------------------------------------- image lists


def make_image_lists(dataset_dir: str | Path, dataset: str, crop_queries: bool, out_lists: str | Path,
                     out_gnd: str | Path, out_manifest: str | Path, version: str, preset: str,
                     on_bad_image: str = "error", max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                     gldv2: dict[str, Any] | None = None) -> None:
    from .datasets import build_image_lists  # noqa: PLC0415

    m = Manifest("image_lists", version, {"dataset": dataset, "crop_queries": crop_queries,
                                          "on_bad_image": on_bad_image, "max_image_pixels": max_image_pixels,
                                          "gldv2": gldv2}, preset)
    lists, gt = build_image_lists(dataset_dir, dataset, crop_queries, on_bad_image, max_image_pixels, gldv2)
    if gt is not None:
        m.add_input("ground_truth", gt.source)
    write_json(out_lists, lists)
    write_json(out_gnd, gt.to_json() if gt is not None else None)
    m.write(out_manifest, outputs=[out_lists, out_gnd], n_db=len(lists["db"]), n_queries=len(lists["query"]),
            skipped_images=lists.get("skipped", []))


def make_lists_with_distractors(base_lists: str | Path, base_gnd: str | Path, distractor_lists: str | Path, dataset: str,
                                out_lists: str | Path, out_gnd: str | Path, out_manifest: str | Path, version: str,
                                preset: str, input_versions: dict[str, str]) -> None:
    """``{dataset}+1m``: the dataset's lists with the distractor set's database appended (see ``with_distractors``)."""
    from .datasets import with_distractors  # noqa: PLC0415

    m = Manifest("image_lists", version, {"dataset": dataset, "distractors": read_json(distractor_lists)["dataset"]}, preset)
    for role, path in (("base_lists", base_lists), ("base_gnd", base_gnd), ("distractor_lists", distractor_lists)):
        m.add_input(role, path, version=input_versions[role.split("_")[0]])
    lists, gnd = with_distractors(read_json(base_lists), read_json(base_gnd), read_json(distractor_lists), dataset)
    write_json(out_lists, lists)
    write_json(out_gnd, gnd)
    log.info("%s: %d database images (%s) + %d distractors, %d queries", dataset, lists["parts"][0]["rows"],
             lists["parts"][0]["dataset"], lists["parts"][1]["rows"], len(lists["query"]))
    m.write(out_manifest, outputs=[out_lists, out_gnd], n_db=len(lists["db"]), n_queries=len(lists["query"]),
            parts=lists["parts"], skipped_images=lists.get("skipped", []))


# ------------------------------------------------------------------------------------------- extract


def shared_query_rows(lists: dict[str, Any]) -> dict[int, int]:
    """Queries whose pixels are a database image's: ``{query row: db row}`` for every query without a crop box
    whose file is listed in the database (a plain folder without query lists, or ``crop_queries: false``)."""
    db_row = {e["path"]: i for i, e in enumerate(lists["db"])}
    return {i: db_row[q["path"]] for i, q in enumerate(lists["query"]) if q.get("crop") is None and q["path"] in db_row}


def extract_local_chunk(lists_path: str | Path, split: str, chunk: int, n_chunks: int, out_path: str | Path,
                        backbone: str, backbone_config: dict[str, Any], version: str, on_bad_image: str = "error",
                        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                        db_chunks: Sequence[str | Path] = ()) -> None:
    """Local features (and, for deep backbones, global descriptors) of one contiguous chunk of the ``db`` or
    ``query`` list. Images are decoded as displayed (images.py); query boxes are in displayed coordinates, so the
    crop is taken on the EXIF-transposed image. A JPEG reduced while decoding (over ``max_image_pixels``) has its
    box scaled down and its keypoints mapped back to full-image pixels. A query chunk given the database's chunks
    (``db_chunks``, same extraction version) copies the rows of queries that are uncropped database images
    (:func:`shared_query_rows`) instead of extracting them again; the copied rows are the database rows exactly."""
    from . import sift  # noqa: PLC0415
    from .images import BadImageError, decode_image  # noqa: PLC0415
    from .local_store import rows_from_chunks, write_local_chunk  # noqa: PLC0415

    if backbone not in ("sift", "dinov2", "resnet", "ames_import"):
        raise ValueError(f"extract.backbone: unknown backbone {backbone!r} (available: sift, dinov2, resnet, ames_import)")
    lists = read_json(lists_path)
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
        from .deep import DeepConfig, DeepExtractor  # noqa: PLC0415

        extractor = DeepExtractor(DeepConfig.from_dict(backbone, backbone_config))
        k, dim, colour = extractor.cfg.k, extractor.local_dim, "bgr"
        def run(img, e, crop):
            return extractor.extract(img, crop) if img.size else extractor.empty(e)
        extra = {"model": json.dumps(extractor.describe())}
        log.info("%s: %s", backbone, extractor.describe())
    rows, globals_ = [], []
    skipped: list[dict[str, str]] = []
    t0 = time.time()
    shared = {q: d for q, d in shared_query_rows(lists).items() if start <= q < stop} if split == "query" and db_chunks else {}
    copied: dict[int, tuple[dict[str, np.ndarray], np.ndarray | None]] = {}
    if shared:
        order = sorted(shared)
        got, got_g = rows_from_chunks(db_chunks, [shared[q] for q in order])
        copied = {q: (r, None if got_g is None else got_g[j]) for j, (q, r) in enumerate(zip(order, got))}
        import h5py  # noqa: PLC0415

        db_skipped = set()
        for p in db_chunks:
            with h5py.File(p, "r") as f:
                db_skipped |= {x["path"] for x in json.loads(f.attrs.get("skipped", "[]"))}
        skipped += [{"path": entries[q]["path"], "reason": "no features in the database row it shares"}
                    for q in order if entries[q]["path"] in db_skipped]
        log.info("%s query chunk %d: %d of %d queries are uncropped database images: their database rows are "
                 "copied, not extracted again", lists["dataset"], chunk, len(shared), stop - start)
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
            row, g = _extract_reduced(run, decoded, e, crop, backbone)
        rows.append(row)
        globals_.append(g)
        if i == (stop - start) // 2:
            fault_point("extract")
        if (i + 1) % 100 == 0 or i + 1 == stop - start:
            log.info("%s %s chunk %d: %d/%d images, %.1f img/s", lists["dataset"], split, chunk, i + 1, stop - start,
                     (i + 1) / (time.time() - t0))
    global_desc = None
    if backbone != "sift":
        global_desc = np.stack(globals_) if globals_ else np.zeros((0, extractor.global_dim), np.float32)
    write_local_chunk(out_path, rows, k=k, dim=dim, backbone=backbone, row_start=start, n_total=len(entries),
                      extra_attrs={"version": version, "split": split, "skipped": json.dumps(skipped),
                                   "seconds": time.time() - t0, **extra},
                      global_desc=global_desc)


def _extract_reduced(run, decoded, entry: dict[str, Any], crop: list[int] | None, backbone: str):
    """Features of a JPEG reduced while decoding, in full-image pixels: the box is scaled to the reduced pixels,
    positions (and SIFT sizes, which are in pixels) are scaled back, the stored size is the full displayed size."""
    fx, fy = decoded.factor
    log.warning("%s: %dx%d pixels over max_image_pixels, decoded at %dx%d (JPEG draft mode)", entry["path"],
                decoded.width, decoded.height, decoded.pixels.shape[1], decoded.pixels.shape[0])
    small = None
    if crop is not None:
        x1, y1, x2, y2 = crop
        small = [int(x1 * fx), int(y1 * fy), max(int(x1 * fx) + 1, round(x2 * fx)), max(int(y1 * fy) + 1, round(y2 * fy))]
    row, g = run(decoded.pixels, entry, small)
    row = dict(row)
    row["xy"] = (row["xy"] / np.array([fx, fy], np.float32)).astype(np.float32)
    if backbone == "sift":
        row["scale"] = (row["scale"] / fx).astype(np.float32)
    row["image_size"] = np.array([decoded.width, decoded.height], np.int32)
    return row, g


def import_ames_chunk(lists: dict[str, Any], split: str, start: int, stop: int, out_path: str | Path,
                      cfg: dict[str, Any], version: str) -> None:
    """Rows [start, stop) of an AMES release file as a local-store chunk (see ames_release.py)."""
    from .ames_release import convert_rows, n_rows, read_rows, release_file  # noqa: PLC0415
    from .local_store import write_local_chunk  # noqa: PLC0415

    if not cfg.get("dir"):
        raise ValueError("extract.ames_import.dir: the folder holding {dataset}/{desc}_{gallery,query}_local.hdf5")
    path = release_file(cfg["dir"], lists["dataset"], cfg["desc"], split)
    if not path.is_file():
        raise FileNotFoundError(f"AMES release file not found: {path}")
    n, _, dim = n_rows(path)
    if n != len(lists[split]):
        raise ValueError(f"{path}: {n} rows but the {split} list of {lists['dataset']} has {len(lists[split])} images")
    meta, desc, packed = read_rows(path, start, stop)
    rows = convert_rows(path, meta, desc, lists[split][start:stop], int(cfg["k"]), cfg["positions"], start, packed)
    write_local_chunk(out_path, rows, k=int(cfg["k"]), dim=dim, backbone="ames_import", row_start=start,
                      n_total=len(lists[split]), extra_attrs={"version": version, "split": split, "skipped": "[]",
                                                              "source": str(path)})


def merge_local(chunk_paths: Sequence[str | Path], lists_path: str | Path, split: str, out_path: str | Path,
                manifest_path: str | Path, version: str, config: dict[str, Any], preset: str, lists_version: str,
                groups: Sequence[int] | None = None, cache: dict[str, str] | None = None,
                on_bad_image: str = "error") -> None:
    """The virtual store of a split; ``groups`` (chunks per part) when the split stacks several extractions
    (``{dataset}+1m``: the dataset's database, then the distractors'); ``cache`` ({"xv", "dir"}) when the chunks are
    feature-cache packs (feature_cache.py: rows mapped by content, in list order)."""
    from .local_store import StoreError, merge_local_chunks  # noqa: PLC0415

    m = Manifest("extract", version, config, preset, split=split)
    m.add_input("lists", lists_path, version=lists_version)
    lists = read_json(lists_path)
    n = len(lists[split])
    if cache is not None:
        from .feature_cache import assemble_store  # noqa: PLC0415

        info = assemble_store(lists, split, cache["dir"], chunk_paths, out_path, cache["xv"], on_bad_image)
        skipped = info.pop("skipped")
        if skipped:
            log.warning("%d image(s) of %s got no features (on_bad_image: skip): %s", len(skipped), split,
                        [s["path"] for s in skipped[:5]])
        log.info("%s %s: %d rows from %d feature-cache pack(s) in %d contiguous run(s)", lists["dataset"], split, n,
                 info["n_chunks"], info["n_runs"])
        m.write(manifest_path, outputs=[out_path, *chunk_paths], store=info, skipped_images=skipped)
        return
    info = merge_local_chunks(chunk_paths, out_path, n, groups)
    if split == "db" and "parts" in lists and info["parts"] != [p["rows"] for p in lists["parts"]]:
        raise StoreError(f"{out_path}: parts of {info['parts']} rows but {lists_path} stacks "
                         f"{[(p['dataset'], p['rows']) for p in lists['parts']]}")
    import h5py  # noqa: PLC0415

    skipped = []
    for p in chunk_paths:
        with h5py.File(p, "r") as f:
            skipped += json.loads(f.attrs.get("skipped", "[]"))
    if skipped:
        log.warning("%d image(s) of %s got no features (on_bad_image: skip): %s", len(skipped), split,
                    [s["path"] for s in skipped[:5]])
    m.write(manifest_path, outputs=[out_path, *chunk_paths], store=info, skipped_images=skipped)


# ------------------------------------------------------------------------------------ global (VLAD)


def fit_codebook(local_path: str | Path, out_path: str | Path, manifest_path: str | Path, k: int, niter: int,
                 max_descriptors: int, seed: int, version: str, config: dict[str, Any], preset: str,
                 training_split: str, local_version: str) -> None:
    from .local_store import open_local  # noqa: PLC0415
    from .vlad import train_codebook  # noqa: PLC0415

    m = Manifest("codebook", version, config, preset, fitted_on=training_split)
    m.add_input("local", local_path, version=local_version, checksum=False)
    rng = np.random.default_rng(seed)
    with open_local(local_path) as f:
        counts = f["count"][:]
        rows = rng.permutation(len(counts))
        # read whole images in random order until there are enough descriptors
        take = rows[: int(np.searchsorted(np.cumsum(counts[rows]), max_descriptors)) + 1]
        take = np.sort(take)
        desc = f["descriptors"][take]
        x = np.concatenate([d[:c] for d, c in zip(desc, counts[take])]).astype(np.float32)
    if len(x) > max_descriptors:
        x = x[rng.choice(len(x), max_descriptors, replace=False)]
    log.info("codebook: k-means with k=%d on %d descriptors of %d images of %s", k, len(x), len(take), training_split)
    centroids = train_codebook(x, k, niter=niter, seed=seed)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, centroids=centroids)
    m.write(manifest_path, outputs=[out_path], n_training_descriptors=len(x))


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def aggregate_vlad(local_path: str | Path, codebook_path: str | Path, out_path: str | Path, alpha: float,
                   version: str, block: int = 256) -> None:
    from .global_store import write_global  # noqa: PLC0415
    from .local_store import open_local  # noqa: PLC0415
    from .vlad import vlad  # noqa: PLC0415

    centroids = load_npz(codebook_path)["centroids"]
    with open_local(local_path) as f:
        n = f["count"].shape[0]
        out = np.zeros((n, centroids.size), np.float32)
        for s in range(0, n, block):
            desc = f["descriptors"][s:s + block]
            counts = f["count"][s:s + block]
            for j, (d, c) in enumerate(zip(desc, counts)):
                out[s + j] = vlad(d[:c].astype(np.float32), centroids, alpha)
    write_global(out_path, out, method="vlad", version=version)


def fit_whitening(vlad_path: str | Path, out_path: str | Path, manifest_path: str | Path, dim: int,
                  min_images_per_dim: float, max_images: int, version: str, config: dict[str, Any], preset: str,
                  training_split: str, vlad_version: str, seed: int = 0) -> None:
    """PCA-whitening of the fit split's database VLADs, or none when there are too few images
    (:func:`retrieval.vlad.whitening_applies`); at most ``max_images`` (a seeded subset) are used."""
    from .global_store import read_global  # noqa: PLC0415
    from .vlad import fit_pca_whitening, identity_whitening, whitening_applies  # noqa: PLC0415

    m = Manifest("whiten", version, config, preset, fitted_on=training_split)
    m.add_input("vlad", vlad_path, version=vlad_version)
    x = read_global(vlad_path)
    n = len(x)
    if n > max_images:
        x = x[np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))]
    applies, reason = whitening_applies(len(x), dim, min_images_per_dim)
    log.info("PCA-whitening fitted on %s: %s", training_split, reason)
    w = {**fit_pca_whitening(x, dim), "applied": np.array(True), "reason": np.array(reason)} if applies else \
        identity_whitening(x.shape[1], reason)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **w)
    m.write(manifest_path, outputs=[out_path], n_training_vectors=len(x), n_images=n, applied=applies, decision=reason)


def apply_whitening(vlad_path: str | Path, whiten_path: str | Path, out_path: str | Path, power: float, version: str) -> None:
    from .global_store import read_global, write_global  # noqa: PLC0415
    from .vlad import apply_whitening as whiten  # noqa: PLC0415

    x = read_global(vlad_path)
    w = load_npz(whiten_path)
    dim = len(w["eigenvalues"]) if bool(w.get("applied", True)) else w["mean"].shape[0]
    write_global(out_path, whiten(x, w, power) if len(x) else np.zeros((0, dim), np.float32),
                 method="vlad+whiten", version=version)


def backbone_global(local_path: str | Path, out_path: str | Path, backbone: str, version: str) -> None:
    """The global descriptors a deep backbone stored next to its local ones."""
    from .global_store import write_global  # noqa: PLC0415
    from .local_store import open_local  # noqa: PLC0415

    with open_local(local_path) as f:
        if "global" not in f:
            raise ValueError(f"{local_path}: no global descriptors (backbone {f.attrs.get('backbone')!r} computes none)")
        x = f["global"][:]
    write_global(out_path, x, method=f"{backbone}-global", version=version)


# ----------------------------------------------------------------------------------------------- knn


def _exact_similarities(d, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """q . x for the returned ids (every id a database row), reading each query's rows in sorted order."""
    if ids.size and (ids.min() < 0 or ids.max() >= d.shape[0]):
        raise ValueError(f"neighbour ids outside the database's {d.shape[0]} rows")
    sims = np.empty(ids.shape, np.float32)
    for i, row in enumerate(ids):
        rows, inverse = np.unique(row, return_inverse=True)
        sims[i] = (d[rows].astype(np.float32) @ q[i].astype(np.float32))[inverse]
    return sims


def nearest_neighbours(query_path: str | Path, db_path: str | Path, out_path: str | Path, k: int, version: str,
                       search: str = "exact", block: int = 100_000, ivfpq: dict[str, Any] | None = None) -> None:
    """k = 0 asks for the full ranking of the database, which the revisitop metrics need. The database is read in
    blocks of ``block`` rows: exact search merges each block's top k; ``ivfpq`` trains a compressed index on a
    sample, adds the blocks and searches it (a truncated shortlist: k > 0), planned by ``scale.plan_ivfpq``: with
    ``nlist: auto`` a database too small to train it gets exact search (logged, and recorded in the file's
    ``ivfpq_fallback`` attribute); an explicit configuration it cannot train is refused with the numbers. Every
    stored id is a database row (IVF-PQ's -1 "no result" never reaches the file)."""
    import h5py  # noqa: PLC0415

    from .featureless import NO_MATCH_SCORE, default_order, featureless_rows  # noqa: PLC0415
    from .global_store import read_global, write_neighbours  # noqa: PLC0415
    from .scale import ivfpq_search, plan_ivfpq, stream_topk  # noqa: PLC0415

    q = read_global(query_path)
    q_none = featureless_rows(q) if len(q) else np.zeros(0, bool)
    with h5py.File(db_path, "r") as f:
        if f.attrs.get("kind") != "global":
            raise ValueError(f"{db_path}: not a global-descriptor file (kind={f.attrs.get('kind')!r})")
        d = f["descriptors"]
        n_db = d.shape[0]
        k_eff = n_db if k == 0 else min(k, n_db)
        db_none = np.zeros(n_db, bool)

        def read(s: int, e: int) -> np.ndarray:
            x = d[s:e]
            db_none[s:e] = featureless_rows(x)  # every block passes here once at least
            return x

        t0 = time.time()
        extra: dict[str, Any] = {}
        if search == "ivfpq":
            if k == 0:
                raise ValueError("knn.search: ivfpq returns a truncated shortlist; set knn.k > 0 (the revisitop "
                                 "metrics need knn.search: exact with knn.k: 0)")
            plan = plan_ivfpq(n_db, d.shape[1], ivfpq or {})
            if "fallback" in plan:
                log.warning("knn.search: ivfpq with nlist auto: %s", plan["fallback"])
                search, extra = "exact", {"ivfpq_fallback": plan["fallback"]}
        if search == "exact":
            ids, sims = stream_topk(q, read, n_db, k_eff, block)
        elif search == "ivfpq":
            ids, stats = ivfpq_search(q, read, n_db, d.shape[1], ivfpq or {}, k_eff, block, seed=0)
            sims = _exact_similarities(d, q, ids)
            if q_none.any() or db_none.any():  # as in exact search; an id faiss could not fill (-1) stays last
                sims[(ids >= 0) & db_none[np.maximum(ids, 0)]] = NO_MATCH_SCORE
                order = np.argsort(-sims, axis=1, kind="stable")
                ids, sims = np.take_along_axis(ids, order, 1), np.take_along_axis(sims, order, 1)
                ids[q_none], sims[q_none] = default_order(db_none)[:ids.shape[1]], NO_MATCH_SCORE
            extra = {"ivfpq": json.dumps(stats)}
        else:
            raise ValueError(f"knn.search: {search!r} is not one of exact, ivfpq")
    seconds = time.time() - t0
    if q_none.any() or db_none.any():
        log.warning("%d of %d queries and %d of %d database images have no features: they are never a match (ranked "
                    "last, score -inf)", int(q_none.sum()), len(q_none), int(db_none.sum()), n_db)
    log.info("knn (%s): %d queries x %d database, k=%d in %.3f s", search, len(q), n_db, k_eff, seconds)
    write_neighbours(out_path, ids, sims, k=k_eff, n_db=n_db, version=version, search_seconds=seconds, search=search,
                     featureless=(q_none, db_none), **extra)


def import_nn(nn_path: str | Path, lists_path: str | Path, out_path: str | Path, version: str) -> None:
    """An AMES ``nn_*.pkl`` shortlist as our neighbours file, after checking it against the image lists."""
    from .ames_release import read_nn  # noqa: PLC0415
    from .global_store import write_neighbours  # noqa: PLC0415

    lists = read_json(lists_path)
    n_db = len(lists["db"])
    ids, sims = read_nn(nn_path, len(lists["query"]), n_db)
    log.info("imported %s: %d queries x top %d of %d database images%s", nn_path, ids.shape[0], ids.shape[1], n_db,
             "" if ids.shape[1] == n_db else " (a truncated shortlist: no revisitop mAP from it)")
    write_neighbours(out_path, ids, sims, k=ids.shape[1], n_db=n_db, version=version, search="imported",
                     source=str(nn_path), search_seconds=0.0)


def export_ames(local_db: str | Path, local_query: str | Path, knn_path: str | Path, lists_path: str | Path,
                gnd_path: str | Path, out_dir: str | Path, dataset: str, desc: str, version: str,
                inputs: dict[str, str]) -> None:
    """This run's artifacts in the AMES release layout, one folder per dataset (``{data_root}/{dataset}/`` for
    AMES's code): ``{desc}_gallery_local.hdf5`` / ``{desc}_query_local.hdf5`` (structured float16), ``nn_{desc}.pkl``
    (torch tensor (2, Nq, K)), ``test_gallery.txt`` / ``test_query.txt`` (path, width, height) and, with ground
    truth, ``gnd_{dataset}.pkl`` (revisitop's dict of lists and numpy arrays)."""
    import pickle  # noqa: PLC0415

    from .ames_release import write_nn, write_release_list, write_release_local  # noqa: PLC0415
    from .global_store import read_neighbours  # noqa: PLC0415
    from .local_store import open_local  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lists = read_json(lists_path)
    if not lists["query"]:
        raise ValueError(f"{dataset}: no queries to export (the export is of an evaluated dataset: lists, local "
                         "descriptors and its shortlist)")
    files = {}
    for split, name in (("db", "gallery"), ("query", "query")):
        with open_local(local_db if split == "db" else local_query) as f:
            shape = write_release_local(f, out / f"{desc}_{name}_local.hdf5")
        if shape["n"] != len(lists[split]):
            raise ValueError(f"{dataset} {split}: {shape['n']} local-descriptor rows but {len(lists[split])} images listed")
        write_release_list(out / f"test_{name}.txt", lists[split], lists["root"])
        files[f"{desc}_{name}_local.hdf5"] = shape
    ids, sims, attrs = read_neighbours(knn_path)
    write_nn(out / f"nn_{desc}.pkl", ids, sims)
    files[f"nn_{desc}.pkl"] = {"shape": [2, *ids.shape], "full_ranking": bool(ids.shape[1] == len(lists["db"]))}
    gnd = read_json(gnd_path)
    if gnd is not None:
        raw = {"imlist": gnd["imlist"], "qimlist": gnd["qimlist"],
               "gnd": [{**{k: np.asarray(g[k], np.int64) for k in ("easy", "hard", "junk")},
                        "bbx": None if g.get("bbx") is None else np.asarray(g["bbx"], np.float64)} for g in gnd["gnd"]]}
        with atomic_path(out / f"gnd_{dataset}.pkl") as tmp, open(tmp, "wb") as fh:
            pickle.dump(raw, fh, protocol=4)
        files[f"gnd_{dataset}.pkl"] = {"queries": len(raw["gnd"])}
    m = Manifest("export_ames", version, {"dataset": dataset, "desc": desc}, None)
    for role, path in inputs.items():
        m.add_input(role, path, checksum=False)
    m.write(out / "manifest.json", outputs=[out / f for f in files], files=files)
    log.info("exported %s to %s: %s", dataset, out, ", ".join(files))


# ------------------------------------------------------------------------------------------ evaluate


def without_features(knn_path: str | Path, lists: dict[str, Any], ranking: np.ndarray, scores: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every method's final ranking passes here: the images without features that the knn file records rank last
    with score -inf, a featureless query gets the database order (featureless.py); returns the ranking, the
    scores and the results-JSON fields ``queries_without_features`` (names) and ``db_images_without_features``."""
    from .featureless import rank_featureless_last  # noqa: PLC0415
    from .global_store import read_featureless  # noqa: PLC0415

    q_none, db_none = read_featureless(knn_path, len(lists["query"]), len(lists["db"]))
    ranking, scores = rank_featureless_last(ranking, scores, q_none, db_none)
    flags = {"queries_without_features": [q["name"] for q, f in zip(lists["query"], q_none) if f],
             "db_images_without_features": int(db_none.sum())}
    return ranking, scores, flags


def write_neighbours_csv(path: str | Path, lists: dict[str, Any], ids: np.ndarray, sims: np.ndarray, top: int) -> None:
    """``query,rank,image,score`` rows of the top ``top`` of each query; an image without features (or any pair of a
    query without features) has the score ``-inf``: not a match."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "rank", "image", "score"])
        for qi, q in enumerate(lists["query"]):
            for r in range(min(top, ids.shape[1])):
                w.writerow([q["path"], r + 1, lists["db"][ids[qi, r]]["path"], f"{sims[qi, r]:.6f}"])


def write_ranking(path: str | Path, ranks: np.ndarray, n_db: int, extra: dict[str, np.ndarray] | None = None) -> None:
    """The ranking file: ``ranks (n_queries, n_db)`` int32, plus any extra per-query arrays."""
    import h5py  # noqa: PLC0415

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ranks", data=ranks.astype(np.int32))
        for name, arr in (extra or {}).items():
            f.create_dataset(name, data=arr)
        f.attrs.update({"schema_version": 1, "kind": "ranking", "n_db": n_db, "layout": "(n_queries, n_db)"})


def result_header(dataset: str, method: str, preset: str, lists: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": dataset, "method": method, "preset": preset, "n_queries": len(lists["query"]),
            "n_db": len(lists["db"]), "crop_queries": lists["crop_queries"]}


def evaluate_global(knn_path: str | Path, lists_path: str | Path, gnd_path: str | Path, out_json: str | Path,
                    out_ranking: str | Path, out_csv: str | Path, dataset: str, method: str, ks: Sequence[int],
                    csv_top: int, versions: dict[str, str], hyperparameters: dict[str, Any], preset: str,
                    provenance: dict[str, Any]) -> None:
    from .global_store import read_neighbours  # noqa: PLC0415
    from .metrics import evaluate_ground_truth, headline, needs_full_ranking  # noqa: PLC0415

    t0 = time.time()
    ids, sims, _ = read_neighbours(knn_path)
    lists = read_json(lists_path)
    gnd = read_json(gnd_path)
    n_db = len(lists["db"])
    if ids.shape[0] != len(lists["query"]):
        raise ValueError(f"{knn_path}: {ids.shape[0]} rows but {len(lists['query'])} queries in {lists_path}")
    if needs_full_ranking(gnd) and ids.shape[1] != n_db:
        raise ValueError(f"{knn_path}: rankings hold {ids.shape[1]} of {n_db} images; revisitop mAP needs the full "
                         "ranking (set knn.k: 0 and knn.search: exact); a truncated shortlist is never scored as if "
                         "the missing images ranked last")
    ids, sims, flags = without_features(knn_path, lists, ids, sims)
    write_ranking(out_ranking, ids, n_db)
    fault_point("evaluate")  # the ranking is in place, the JSON not yet
    write_neighbours_csv(out_csv, lists, ids, sims, csv_top)
    result = result_header(dataset, method, preset, lists)
    if gnd is None:
        log.warning("%s has no ground truth: writing rankings and neighbours only", dataset)
        result["metrics"] = None
    else:
        m = evaluate_ground_truth(ids, gnd, n_db, ks)
        result["metrics"] = headline(m)
        result["n_evaluated_queries"] = m["n_evaluated"]
        result["per_query_ap"] = {p: {"query": [q["name"] for q in lists["query"]], "ap": m["per_query_ap"][p]}
                                  for p in m["per_query_ap"]}
        add_subset_note(result, gnd)
        log.info("%s %s: %s", dataset, method, result["metrics"])
    result.update(flags)
    result["hyperparameters"] = hyperparameters
    result["versions"] = versions
    result["provenance"] = provenance
    result["artifacts"] = {"ranking": str(out_ranking), "neighbours_csv": str(out_csv), "knn": str(knn_path),
                           "lists": str(lists_path)}
    result["timing"] = cost_timing(len(lists["query"]), evaluate_seconds=round(time.time() - t0, 3))
    write_json(out_json, result)


def add_subset_note(result: dict[str, Any], gnd: dict[str, Any] | None) -> None:
    """Results of a ground truth restricted to the images present (GLDv2 ``present_only``) say so."""
    if gnd is not None and gnd.get("subset"):
        result["ground_truth_subset"] = gnd["subset"]


def cost_timing(n_queries: int, reads: float = 0.0, rerank: float = 0.0, offline: float = 0.0, **extra: Any) -> dict[str, Any]:
    """The timing block every method writes: seconds and milliseconds per query of descriptor reads and
    re-ranking (the first stage is the knn file's search time), and per-database work done once (offline)."""
    n = max(1, n_queries)
    return {"n_queries": n_queries, "reads_seconds": round(reads, 6), "rerank_seconds": round(rerank, 6),
            "offline_seconds": round(offline, 6),
            "ms_per_query": {"reads": round(1000 * reads / n, 3), "rerank": round(1000 * rerank / n, 3)}, **extra}


def write_reranked_evaluation(method: str, ranking: np.ndarray, scores: np.ndarray, base_ids: np.ndarray,
                              lists: dict[str, Any], gnd: dict[str, Any] | None, dataset: str, out_json: str,
                              out_ranking: str, out_csv: str, baseline_json: str, knn_path: str, n_bootstrap: int, ks,
                              csv_top: int, versions: dict[str, str], hyperparameters: dict[str, Any], preset: str,
                              timing: dict[str, Any], extra_datasets: dict[str, np.ndarray] | None = None) -> None:
    """Ranking file, neighbour CSV and results JSON of a method that re-orders the global ranking: its metrics
    next to the global baseline's, the paired per-query difference with a bootstrap interval, per-query AP."""
    from .ames_rerank import bootstrap_difference  # noqa: PLC0415
    from .metrics import evaluate_ground_truth, headline  # noqa: PLC0415

    n_db = len(lists["db"])
    ranking, scores, flags = without_features(knn_path, lists, ranking, scores)
    write_ranking(out_ranking, ranking, n_db, extra_datasets)
    write_neighbours_csv(out_csv, lists, ranking, scores, csv_top)
    result = result_header(dataset, method, preset, lists)
    if gnd is None:
        log.warning("%s has no ground truth: writing rankings and neighbours only", dataset)
        result["metrics"] = None
    else:
        m = evaluate_ground_truth(ranking, gnd, n_db, ks)
        base = evaluate_ground_truth(base_ids, gnd, n_db, ks)
        names = [q["name"] for q in lists["query"]]
        result["metrics"] = headline(m)
        result["baseline"] = {"method": "global", "metrics": headline(base)}
        result["paired_difference"] = {p: bootstrap_difference(base["per_query_ap"][p], m["per_query_ap"][p], n_bootstrap)
                                       for p in m["per_query_ap"]}
        result["per_query_ap"] = {p: {"query": names, "ap": m["per_query_ap"][p], "baseline_ap": base["per_query_ap"][p]}
                                  for p in m["per_query_ap"]}
        add_subset_note(result, gnd)
        log.info("%s %s: %s (global %s)", dataset, method, result["metrics"], result["baseline"]["metrics"])
    result.update(flags)
    result["hyperparameters"] = hyperparameters
    result["versions"] = versions
    result["artifacts"] = {"ranking": str(out_ranking), "neighbours_csv": str(out_csv), "knn": str(knn_path),
                           "baseline": str(baseline_json)}
    result["timing"] = timing
    write_json(out_json, result)


def publish(src_json: str | Path, out_json: str | Path, fitted_on: dict[str, Any] | None = None,
            whiten_path: str | Path | None = None) -> None:
    """The top-level ``results/{dataset}_{method}.json``: a copy of the versioned evaluation it names, with
    ``fitted_on`` (what each fitted component was fitted on; whether PCA-whitening was applied, from its file)."""
    result = read_json(src_json)
    result["artifacts"]["evaluation"] = str(src_json)
    fitted_on = dict(fitted_on or {})
    if whiten_path and "whitening" in fitted_on:
        w = load_npz(whiten_path)
        fitted_on["whitening"] = {**fitted_on["whitening"], "applied": bool(w.get("applied", True)),
                                  "decision": str(w["reason"]) if "reason" in w else "on"}
    result["fitted_on"] = fitted_on
    write_json(out_json, result)

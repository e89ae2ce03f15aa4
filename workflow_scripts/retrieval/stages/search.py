"""Search a folder of new photos against an indexed collection: ranked neighbours per photo (CSV of paths and
scores), optionally re-ranked by spatial verification, and an HTML contact sheet with the report's thumbnails.

The new photos are a plain folder (a dataset of their own: only their database split is extracted and
aggregated); the collection's stored database descriptors (local and global) are read as they are, nothing of it
is extracted again."""

from __future__ import annotations

import csv
import html
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.evaluation.report import retrieved_images
from retrieval.methods.sv import SVConfig, rerank_by_inliers, verify_shortlists
from retrieval.runtime import Manifest, atomic_path, read_lists, write_json
from retrieval.search.exact import similarity_along
from retrieval.stores.global_store import read_neighbours
from retrieval.stores.local_store import open_local

log = logging.getLogger(__name__)


RERANKERS = ("none", "sv")


def write_search_csv(
    path: str | Path,
    photos: list[dict[str, Any]],
    collection: list[dict[str, Any]],
    ids: np.ndarray,
    similarity: np.ndarray,
    inliers: np.ndarray | None = None,
) -> None:
    """One row per (photo, rank): ``photo, rank, image, similarity`` (paths as listed; the global similarity), and
    with spatial verification ``inliers`` (an integer; 0 beyond the verified top). ``ids``, ``similarity`` and
    ``inliers``: ``(n_photos, k)`` in the listed order."""

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["photo", "rank", "image", "similarity"] + (["inliers"] if inliers is not None else []))
        for qi, q in enumerate(photos):
            for r in range(ids.shape[1]):
                row = [q["path"], r + 1, collection[int(ids[qi, r])]["path"], f"{similarity[qi, r]:.6f}"]
                w.writerow(row + ([int(inliers[qi, r])] if inliers is not None else []))


def contact_sheet(
    out_html: str | Path,
    title: str,
    photos: list[dict[str, Any]],
    collection: list[dict[str, Any]],
    ids: np.ndarray,
    similarity: np.ndarray,
    top: int,
    max_photos: int,
    inliers: np.ndarray | None = None,
) -> None:
    """A self-contained HTML page: per new photo (the first ``max_photos``), the photo then its top ``top``
    neighbours as the report's thumbnails (``report.retrieved_images``), and a table of their paths, global
    similarities and, re-ranked by spatial verification, inlier counts (``inliers``, aligned with ``ids``). A photo
    without features (unreadable, or blank) is said to be one: its row is the collection's order, not a match."""

    shown = list(range(min(max_photos, len(photos))))
    lists = {"query": photos, "db": collection}
    by = "inliers (spatial verification)" if inliers is not None else "similarity"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:85%}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(photos)} new photos against {len(collection)} collection images; each row: the new photo, then "
        f"its top {min(top, ids.shape[1])} by {by}"
        + (f" (first {len(shown)} photos shown; the CSV has all)" if len(shown) < len(photos) else "")
        + ".</p>",
    ]
    head = "<tr><th>rank</th><th>image</th><th>similarity</th>" + ("<th>inliers</th>" if inliers is not None else "")
    for q in shown:
        featureless = not np.isfinite(similarity[q]).any()
        note = " (no features: unreadable or blank; these are not matches)" if featureless else ""
        parts.append(f"<h3>{html.escape(photos[q]['path'])}{note}</h3>")
        parts.append(retrieved_images(ids, lists, None, [q], top))
        rows = "".join(
            f"<tr><td>{r + 1}</td><td>{html.escape(collection[int(ids[q, r])]['path'])}</td>"
            f"<td>{similarity[q, r]:.4f}</td>"
            + (f"<td>{int(inliers[q, r])}</td>" if inliers is not None else "")
            + "</tr>"
            for r in range(min(top, ids.shape[1]))
        )
        parts.append(f"<table>{head}</tr>{rows}</table>")
    parts.append("</body></html>")
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text("\n".join(parts))


def _json_neighbour(image: str, similarity: float, inliers: float | None) -> dict[str, Any]:
    """A neighbour as JSON has it: ``image``, the global ``similarity`` and, re-ranked by spatial verification,
    ``inliers`` (an integer). No match (a photo without features scores -inf against everything) gives null for
    both, as JSON has no infinity (strict parsers refuse it); under ``sv`` the entry once held ``inliers: 0`` only,
    which read as a match with no inliers. The similarity is rounded to 6 decimals, as the CSV writes it: float32
    holds about 7 significant digits, and the float64 it widens to printed an exact copy's 1.0 as
    1.0000001192092896 (a new user's trial)."""
    match = bool(np.isfinite(similarity))
    out: dict[str, Any] = {"image": image, "similarity": round(float(similarity), 6) if match else None}
    if inliers is not None:
        out["inliers"] = int(inliers) if match else None
    return out


def search_stage(
    knn_path: str,
    photos_lists: str,
    collection_lists: str,
    photos_local: str | None,
    collection_local: str | None,
    out_csv: str,
    out_html: str,
    out_json: str,
    manifest_path: str,
    collection: str,
    photos: str,
    rerank: str,
    k: int,
    sv_cfg: dict[str, Any] | None,
    top: int,
    max_photos: int,
    version: str,
    inputs: dict[str, str],
    config: dict[str, Any],
) -> dict[str, Any]:
    """The neighbours of every new photo in the collection (the ``knn`` file, queries = the photos' database
    split), re-ranked when ``rerank`` is ``sv`` (``sv.py``: inliers of the top ``sv.num_rerank`` of the file, global
    similarity breaking ties; the CSV, the sheet and the JSON then give the inlier count beside the similarity); the
    first ``k`` (``search.k``) are written
    as CSV, HTML sheet and JSON. ``sv_cfg``: the ``sv`` section, read only when ``rerank`` is ``sv`` (the rule
    passes None otherwise). Raises ValueError for an unknown ``rerank``, ``sv`` without ``sv_cfg``, or row counts
    that do not match the lists."""

    if rerank not in RERANKERS:
        raise ValueError(f"search.rerank: {rerank!r} is not one of {', '.join(RERANKERS)}")
    if rerank == "sv" and sv_cfg is None:
        raise ValueError("search.rerank: sv needs the sv section of the configuration")
    ids, sims, attrs = read_neighbours(knn_path)
    q_list, db_list = read_lists(photos_lists)["db"], read_lists(collection_lists)["db"]
    if ids.shape[0] != len(q_list) or int(attrs["n_db"]) != len(db_list):
        raise ValueError(
            f"{knn_path}: {ids.shape[0]} x {attrs['n_db']} neighbours but {len(q_list)} photos in "
            f"{photos_lists} and {len(db_list)} images in {collection_lists}"
        )
    t0 = time.time()
    scores, score_name, extra = sims, "similarity", {}
    if rerank == "sv":
        conf = SVConfig(**sv_cfg)
        with open_local(photos_local) as fq, open_local(collection_local) as fd:
            inliers, timing = verify_shortlists(fq, fd, ids, conf)
        new = rerank_by_inliers(ids, sims, inliers, conf.num_rerank)
        verified = inliers.shape[1]
        pos = {(r, int(j)): c for r in range(ids.shape[0]) for c, j in enumerate(ids[r, :verified])}
        scores = np.array(
            [[inliers[r, pos[(r, int(j))]] if (r, int(j)) in pos else 0 for j in new[r]] for r in range(ids.shape[0])],
            np.float32,
        )
        sims = similarity_along(new, ids, sims)
        ids, score_name, extra = new, "inliers", {"sv": timing}
    seconds = time.time() - t0
    ids, sims, scores = ids[:, :k], sims[:, :k], scores[:, :k]  # the file holds more when sv verified more
    write_search_csv(out_csv, q_list, db_list, ids, sims, scores if rerank == "sv" else None)
    contact_sheet(
        out_html,
        f"{photos} searched in {collection}",
        q_list,
        db_list,
        ids,
        sims,
        top,
        max_photos,
        scores if rerank == "sv" else None,
    )
    result = {
        "collection": collection,
        "photos": photos,
        "n_photos": len(q_list),
        "n_collection": len(db_list),
        "k": int(ids.shape[1]),
        "rerank": rerank,
        "score": score_name,
        # unreadable (on_bad_image: skip) or blank: their neighbours are the collection's order, not matches
        "photos_without_features": [q["path"] for i, q in enumerate(q_list) if not np.isfinite(sims[i]).any()],
        "search": attrs.get("search"),
        "search_seconds": float(attrs.get("search_seconds", 0.0)),
        "rerank_seconds": round(seconds, 3),
        # with both sides' lists: a later run that lists the collection again (photos added, removed, replaced) makes
        # this search stale (retrieval.evaluation.results.stale_published), as it makes its knn file's inputs newer
        "artifacts": {
            "csv": str(out_csv),
            "html": str(out_html),
            "knn": str(knn_path),
            "photos_lists": str(photos_lists),
            "collection_lists": str(collection_lists),
        },
        **extra,
        "neighbours": [
            {
                "photo": q["path"],
                "top": [
                    _json_neighbour(db_list[int(j)]["path"], g, s if rerank == "sv" else None)
                    for j, g, s in zip(ids[i, :top], sims[i, :top], scores[i, :top])
                ],
            }
            for i, q in enumerate(q_list)
        ],
    }
    write_json(out_json, result)
    m = Manifest("search", version, config, None)
    for role, path in inputs.items():
        m.add_input(role, path, checksum=False)
    m.write(manifest_path, outputs=[out_csv, out_html, out_json])
    log.info(
        "searched %d photos of %s in %s (%d images): top %d, re-rank %s",
        len(q_list),
        photos,
        collection,
        len(db_list),
        ids.shape[1],
        rerank,
    )
    return result


def publish_search(sources: dict[str, str], targets: dict[str, str]) -> None:
    """Copy the versioned search files to their top-level names (each written atomically)."""

    for name, src in sources.items():
        with atomic_path(targets[name]) as tmp:
            shutil.copyfile(src, tmp)

"""The ``export_ames`` stage: this run's artifacts in the AMES release layout."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.runtime import Manifest, atomic_path, read_lists
from retrieval.stores.ames_release import write_nn, write_release_list, write_release_local
from retrieval.stores.global_store import read_neighbours
from retrieval.stores.local_store import open_local

log = logging.getLogger(__name__)


def release_ground_truth(gnd: dict[str, Any]) -> dict[str, Any]:
    """revisitop's pickled dict (``gnd_{dataset}.pkl``) from a ``gnd.json``-form dict: ``imlist``, ``qimlist`` and
    ``gnd`` entries of int64 arrays ``easy`` / ``hard`` / ``junk`` and a float64 ``bbx`` (or None), what AMES's code
    reads; and ``image_dir`` where names are not relative to ``jpg/`` (gnd.csv's ``jpg/a.jpg``, ``queries/q.jpg``,
    relative to the folder: without it the import read them under ``jpg/`` again, ``jpg/jpg/a.jpg``, and every
    thumbnail of the report was crossed out, a new user's trial)."""
    raw: dict[str, Any] = {
        "imlist": gnd["imlist"],
        "qimlist": gnd["qimlist"],
        "gnd": [
            {
                **{k: np.asarray(g[k], np.int64) for k in ("easy", "hard", "junk")},
                "bbx": None if g.get("bbx") is None else np.asarray(g["bbx"], np.float64),
            }
            for g in gnd["gnd"]
        ],
    }
    if gnd.get("image_dir", "jpg") != "jpg":
        raw["image_dir"] = gnd["image_dir"]
    return raw


def export_ames(
    local_db: str | Path,
    local_query: str | Path,
    knn_path: str | Path,
    lists_path: str | Path,
    gnd_path: str | Path,
    out_dir: str | Path,
    dataset: str,
    desc: str,
    version: str,
    inputs: dict[str, str],
    input_versions: dict[str, str] | None = None,
    preset: str | None = None,
) -> None:
    """This run's artifacts in the AMES release layout, one folder per dataset (``{data_root}/{dataset}/`` for
    AMES's code): ``{desc}_gallery_local.hdf5`` / ``{desc}_query_local.hdf5`` (structured float16), ``nn_{desc}.pkl``
    (torch tensor (2, Nq, K)), ``test_gallery.txt`` / ``test_query.txt`` (path, width, height) and, with ground
    truth, ``gnd_{dataset}.pkl`` (revisitop's dict of lists and numpy arrays); ``manifest.json`` records the inputs
    (``input_versions``; SHA-1s but for the local stores), the version and the ``preset``."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lists = read_lists(lists_path)
    if not lists["query"]:
        raise ValueError(
            f"{dataset}: no queries to export (the export is of an evaluated dataset: lists, local "
            "descriptors and its shortlist)"
        )
    files = {}
    for split, name in (("db", "gallery"), ("query", "query")):
        with open_local(local_db if split == "db" else local_query) as f:
            shape = write_release_local(f, out / f"{desc}_{name}_local.hdf5")
        if shape["n"] != len(lists[split]):
            raise ValueError(
                f"{dataset} {split}: {shape['n']} local-descriptor rows but {len(lists[split])} images listed"
            )
        write_release_list(out / f"test_{name}.txt", lists[split], lists["root"])
        files[f"{desc}_{name}_local.hdf5"] = shape
        files[f"test_{name}.txt"] = {"images": len(lists[split])}
    ids, sims, attrs = read_neighbours(knn_path)
    write_nn(out / f"nn_{desc}.pkl", ids, sims)
    files[f"nn_{desc}.pkl"] = {"shape": [2, *ids.shape], "full_ranking": bool(ids.shape[1] == len(lists["db"]))}
    gnd = read_lists(gnd_path)
    if gnd is not None:
        raw = release_ground_truth(gnd)
        with atomic_path(out / f"gnd_{dataset}.pkl") as tmp, open(tmp, "wb") as fh:
            pickle.dump(raw, fh, protocol=4)
        files[f"gnd_{dataset}.pkl"] = {"queries": len(raw["gnd"])}
    m = Manifest("export_ames", version, {"dataset": dataset, "desc": desc}, preset)
    for role, path in inputs.items():
        # the local stores (gigabytes at scale) by version only; the shortlist, lists and ground truth with SHA-1s
        m.add_input(role, path, (input_versions or {}).get(role), checksum=role not in ("db", "query"))
    m.write(out / "manifest.json", outputs=[out / f for f in files], files=files)
    log.info("exported %s to %s: %s", dataset, out, ", ".join(files))

"""The ``codebook``, ``aggregate_vlad`` and ``backbone_global`` stages: the global descriptors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.features.vlad import train_codebook, vlad
from retrieval.runtime import Manifest, atomic_path, load_npz
from retrieval.stores.global_store import block_rows, global_writer
from retrieval.stores.local_store import open_local, read_row_runs

log = logging.getLogger(__name__)

# below this many images, a codebook fitted on them biases their VLAD similarities visibly (about -1/(N-1))
FEW_FIT_IMAGES = 20


def fit_codebook(
    local_path: str | Path,
    out_path: str | Path,
    manifest_path: str | Path,
    k: int,
    niter: int,
    max_descriptors: int,
    seed: int,
    version: str,
    config: dict[str, Any],
    preset: str,
    training_split: str,
    local_version: str,
) -> None:

    m = Manifest("codebook", version, config, preset, fitted_on=training_split)
    m.add_input("local", local_path, version=local_version, checksum=False)
    rng = np.random.default_rng(seed)
    with open_local(local_path) as f:
        counts = f["count"][:]
        rows = rng.permutation(len(counts))
        # read whole images in random order until there are enough descriptors
        take = rows[: int(np.searchsorted(np.cumsum(counts[rows]), max_descriptors)) + 1]
        take = np.sort(take)
        desc = read_row_runs(f["descriptors"], take)
        x = np.concatenate([d[:c] for d, c in zip(desc, counts[take])]).astype(np.float32)
    if len(x) > max_descriptors:
        x = x[rng.choice(len(x), max_descriptors, replace=False)]
    log.info("codebook: k-means with k=%d on %d descriptors of %d images of %s", k, len(x), len(take), training_split)
    n_fit = int((counts > 0).sum())  # images without features (blank, unreadable under skip) add nothing to the fit
    if n_fit < FEW_FIT_IMAGES:
        log.warning(
            "codebook: %s has only %d %s with local features%s. Each centroid is the mean of the descriptors assigned to it, so the "
            "images' VLAD residuals cancel: %s. Similarities of a collection this small read low; fit on more images "
            "(unsupervised_fit: training or a larger dataset's name; for the training split's own fit, a larger "
            "training_split)",
            training_split,
            n_fit,
            "image" if n_fit == 1 else "images",
            "" if n_fit == len(counts) else f" (of {len(counts)})",
            # one image: its own residuals sum to zero on every word (helper-104: the N-image rule read oddly)
            "one image's sum to about zero on every word, so its VLAD is little more than rounding"
            if n_fit == 1
            else "with 2 images they are exactly opposite (similarity -1), with N about -1/(N-1) apart on average",
        )
    if len(x) < k:
        total, n, elsewhere = (
            int(counts.sum()),
            len(counts),
            "fit on a larger dataset (unsupervised_fit: training or a dataset's name; for the training split's own "
            "fit, a larger training_split)",
        )
        if total == 0:
            fix = (
                f"none of its {n} images has a local feature (blank or featureless photos?): add images or {elsewhere}"
            )
        elif total < k:
            fix = (
                f"its {n} images have {total} local features in all, fewer than the codebook's {k} words: add images, "
                f"{elsewhere} or lower codebook.k"
            )
        else:
            fix = f"codebook.max_descriptors ({max_descriptors}) is below codebook.k ({k}): raise it"
        raise ValueError(f"codebook: {local_path} ({training_split}): {fix}")
    centroids = train_codebook(x, k, niter=niter, seed=seed)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, centroids=centroids)
    m.write(manifest_path, outputs=[out_path], n_training_descriptors=len(x))


def aggregate_vlad(
    local_path: str | Path,
    codebook_path: str | Path,
    out_path: str | Path,
    alpha: float,
    version: str,
    block: int = 256,
) -> None:
    """The VLAD of every image of a local store, written ``block`` images at a time: memory follows the block, not
    the database (a million 8192-d VLADs are 32 GB)."""
    centroids = load_npz(codebook_path)["centroids"]
    with open_local(local_path) as f:
        n = f["count"].shape[0]
        with global_writer(out_path, n, centroids.size, method="vlad", version=version) as out:
            for s in range(0, n, block):
                desc = f["descriptors"][s : s + block]
                counts = f["count"][s : s + block]
                rows = np.zeros((len(counts), centroids.size), np.float32)
                for j, (d, c) in enumerate(zip(desc, counts)):
                    rows[j] = vlad(d[:c].astype(np.float32), centroids, alpha)
                out[s : s + len(rows)] = rows


def backbone_global(local_path: str | Path, out_path: str | Path, backbone: str, version: str) -> None:
    """The global descriptors a deep backbone stored next to its local ones, copied in blocks of
    :func:`block_rows` rows (at most 256 MiB of float32; a million 768-d descriptors are 3 GB)."""

    with open_local(local_path) as f:
        if "global" not in f:
            raise ValueError(
                f"{local_path}: no global descriptors (backbone {f.attrs.get('backbone')!r} computes none)"
            )
        g = f["global"]
        n, dim = g.shape
        rows = block_rows(n, dim)
        with global_writer(out_path, n, dim, method=f"{backbone}-global", version=version) as out:
            for s in range(0, n, rows):
                out[s : s + rows] = g[s : s + rows]

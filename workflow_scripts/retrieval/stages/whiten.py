"""The PCA-whitening stages of the VLAD (``whiten_fit``, ``whiten_apply``); supervised Lw whitening is in
:mod:`retrieval.stages.lw`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.featureless import featureless_rows
from retrieval.features.vlad import apply_whitening as whiten
from retrieval.features.vlad import fit_pca_whitening, identity_whitening, whitening_applies
from retrieval.runtime import Manifest, atomic_path, load_npz
from retrieval.stores.global_store import block_rows, finite_rows, global_writer, open_global

log = logging.getLogger(__name__)


def fit_pca_whitening_stage(
    vlad_path: str | Path,
    out_path: str | Path,
    manifest_path: str | Path,
    dim: int,
    min_images_per_dim: float,
    max_images: int,
    version: str,
    config: dict[str, Any],
    preset: str,
    training_split: str,
    vlad_version: str,
    seed: int = 0,
) -> None:
    """PCA-whitening of the fit split's database VLADs, or none when there are too few images
    (:func:`retrieval.features.vlad.whitening_applies`); at most ``max_images`` (a seeded subset) are used, and of
    those only the images with features (an all-zero VLAD, an image without descriptors, would pull the mean to 0
    and add a component along it; :mod:`retrieval.featureless`)."""

    m = Manifest("whiten", version, config, preset, fitted_on=training_split)
    m.add_input("vlad", vlad_path, version=vlad_version)
    with open_global(vlad_path) as f:
        d = f["descriptors"]
        n = len(d)
        keep = np.arange(n)
        if n > max_images:
            keep = np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))
        # only the sampled rows are held, read block by block (a million 8192-d VLADs are 32 GB)
        x = np.empty((len(keep), d.shape[1]), np.float32)
        rows = block_rows(n, d.shape[1])
        for s in range(0, n, rows):
            lo, hi = np.searchsorted(keep, [s, s + rows])
            if hi > lo:
                x[lo:hi] = finite_rows(vlad_path, d[s : s + rows])[keep[lo:hi] - s]
    without = featureless_rows(x)
    if without.any():
        log.info("PCA-whitening: %d of the %d sampled images have no features and are left out", without.sum(), len(x))
        x = x[~without]
    applies, reason = whitening_applies(len(x), dim, min_images_per_dim)
    if applies and len(x) - 1 < dim <= x.shape[1]:  # min_images_per_dim near 0, or most images blank
        applies, reason = (
            False,
            (
                f"off: {len(x)} image(s) with features, too few for whiten.dim {dim} components (at least {dim + 1}); "
                "the L2-normalised VLAD is used as it is"
            ),
        )
    log.info("PCA-whitening fitted on %s: %s", training_split, reason)
    w = (
        {**fit_pca_whitening(x, dim), "applied": np.array(True), "reason": np.array(reason)}
        if applies
        else identity_whitening(x.shape[1], reason)
    )
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **w)
    m.write(
        manifest_path,
        outputs=[out_path],
        n_training_vectors=len(x),
        n_images=n,
        n_without_features=int(without.sum()),
        applied=applies,
        decision=reason,
    )


def apply_pca_whitening_stage(
    vlad_path: str | Path, whiten_path: str | Path, out_path: str | Path, power: float, version: str
) -> None:
    """The whitened global descriptors of a VLAD file, in blocks of :func:`block_rows` rows (256 MiB of float32):
    a million 8192-d VLADs would be 32 GB in memory. Whitening is per row, so the blocks change nothing."""
    w = load_npz(whiten_path)
    applied = bool(w.get("applied", True))
    dim = len(w["eigenvalues"]) if applied else w["mean"].shape[0]
    method = "vlad+whiten" if applied else "vlad"  # an identity whitening (too few images) is not named as one
    with open_global(vlad_path) as f:
        x = f["descriptors"]
        rows = block_rows(len(x), x.shape[1])
        with global_writer(out_path, len(x), dim, method=method, version=version) as out:
            for s in range(0, len(x), rows):
                out[s : s + rows] = whiten(finite_rows(vlad_path, x[s : s + rows]), w, power)

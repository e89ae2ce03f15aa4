"""Supervised Lw whitening (Radenovic et al., TPAMI 2018): learned from positive pairs of the training split."""

from __future__ import annotations

import numpy as np


def positive_pairs(labels: np.ndarray, max_pairs: int, seed: int) -> np.ndarray:
    """All (i, j), i < j, of rows with the same label >= 0; a seeded random subset when more than max_pairs."""
    labels = np.asarray(labels)
    pairs = []
    for lab in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == lab)
        i, j = np.triu_indices(len(rows), k=1)
        pairs.append(np.stack([rows[i], rows[j]], axis=1))
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    if len(pairs) > max_pairs:
        pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))]
    return pairs


def fit_lw_whitening(x: np.ndarray, pairs: np.ndarray, ridge: float = 0.0) -> dict[str, np.ndarray]:
    """Supervised (Lw) whitening of Radenović et al. (TPAMI 2018) from matching pairs (i, j) of rows of x.

    The mean is that of the pairs' first members; S is the covariance of the pair differences (plus ``ridge`` times
    its mean eigenvalue on the diagonal when there are too few pairs); P = L^-1 with S = L L^T whitens the
    intra-class variation; then the PCA of all P(x - mean) rotates it. Apply with power 0 (projection only):
    the result whitens the matching-pair differences, P S P^T = I."""
    x = np.asarray(x, np.float64)
    d = x.shape[1]
    if len(pairs) < 2:
        raise ValueError(f"Lw whitening needs matching pairs (same label); got {len(pairs)}")
    mean = x[pairs[:, 0]].mean(axis=0)
    df = x[pairs[:, 0]] - x[pairs[:, 1]]
    s = df.T @ df / len(df)
    s += ridge * (np.trace(s) / d) * np.eye(d)
    try:
        chol = np.linalg.cholesky(s)
    except np.linalg.LinAlgError as e:
        raise ValueError(
            f"Lw whitening: the pair-difference covariance ({len(pairs)} pairs, dimension {d}) is singular; "
            "raise lw.ridge or use more pairs"
        ) from e
    p = np.linalg.inv(chol)
    y = (x - mean) @ p.T
    eig, v = np.linalg.eigh(y.T @ y / len(y))
    order = np.argsort(-eig)
    eig, v = eig[order], v[:, order]
    v *= np.sign(v[np.abs(v).argmax(axis=0), np.arange(d)])  # reproducible signs
    return {
        "mean": mean.astype(np.float32),
        "projection": (v.T @ p).astype(np.float32),
        "eigenvalues": np.maximum(eig, 0).astype(np.float32),
    }

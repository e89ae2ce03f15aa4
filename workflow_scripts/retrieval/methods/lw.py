"""Supervised Lw whitening (Radenovic et al., TPAMI 2018): learned from positive pairs of the training split."""

from __future__ import annotations

import numpy as np


def positive_pairs(labels: np.ndarray, max_pairs: int, seed: int) -> np.ndarray:
    """All (i, j), i < j, of rows with the same label >= 0, as an (n_pairs, 2) int64 array (labels in sorted order,
    each label's pairs in ``np.triu_indices`` order); when there are more than ``max_pairs``, a seeded random subset
    of that list, in its order. The subset is drawn as indices into the list and only those pairs are built: a
    label with 20,000 images has 200M pairs (3.2 GB as int64), which were all built before subsampling."""
    labels = np.asarray(labels)
    labelled = np.flatnonzero(labels >= 0)
    by_label = labelled[np.argsort(labels[labelled], kind="stable")]  # each label's rows ascending, labels sorted
    _, first = np.unique(labels[by_label], return_index=True)
    groups = np.split(by_label, first[1:]) if len(by_label) else []
    counts = np.array([len(g) * (len(g) - 1) // 2 for g in groups], np.int64)
    total = int(counts.sum())
    if total > max_pairs:
        flat = np.sort(np.random.default_rng(seed).choice(total, max_pairs, replace=False)).astype(np.int64)
    else:
        flat = np.arange(total, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    which = np.searchsorted(starts, flat, side="right") - 1  # the label of each pair (ascending: flat is sorted)
    pairs = np.empty((len(flat), 2), np.int64)
    present, begin = np.unique(which, return_index=True)
    for g, lo, hi in zip(present, begin, [*begin[1:], len(flat)]):
        rows, t = groups[g], flat[lo:hi] - starts[g]
        n = len(rows)
        i = np.arange(n - 1)
        offsets = i * n - i * (i + 1) // 2  # where row i's pairs (i, i+1..n-1) begin
        i = np.searchsorted(offsets, t, side="right") - 1
        pairs[lo:hi] = np.stack([rows[i], rows[t - offsets[i] + i + 1]], axis=1)
    return pairs


def pair_span(pairs: np.ndarray) -> int:
    """An upper bound on the rank of the pair differences x_i - x_j over ``pairs`` (P, 2) int64: the images the pairs
    use minus the connected groups they form (a group of n images linked by any number of pairs spans at most n - 1
    directions; all C(n, 2) pairs of a label span n - 1). Exact for descriptors in general position."""
    parent: dict[int, int] = {}

    def root(a: int) -> int:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]  # path halving
            a = parent[a]
        return a

    for i, j in np.asarray(pairs, np.int64).reshape(-1, 2).tolist():
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[ri] = rj
    return len(parent) - sum(1 for a in parent if root(a) == a)


def fit_lw_whitening(x: np.ndarray, pairs: np.ndarray, ridge: float = 0.0) -> dict[str, np.ndarray]:
    """Supervised (Lw) whitening of Radenović et al. (TPAMI 2018) from matching pairs (i, j) of rows of x.

    The mean is that of the pairs' first members (as cirtorch's ``whitenlearn`` takes the mean over its query
    indices: within a label of n images listed i < j, image k weighs n - 1 - k); S is the covariance of the pair
    differences plus, always, ``ridge`` times its mean eigenvalue on the diagonal (``ridge`` 0: cirtorch's S, which
    is singular with fewer pairs than dimensions); P = L^-1 with S = L L^T whitens the intra-class variation; then
    the PCA of all P(x - mean) rotates it. Apply with power 0 (projection only): the result whitens the
    matching-pair differences of the regularised S, P S P^T = I. ValueError for fewer than 2 pairs, or for a
    singular S (fewer independent pair differences than dimensions and ``ridge`` 0: raise ``lw.ridge``)."""
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

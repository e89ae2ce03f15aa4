"""Global descriptors from local ones: k-means codebook, VLAD, and learned PCA-whitening.

VLAD (Jégou et al. 2010) sums the residuals of each descriptor to its nearest codeword; each codeword's block is
L2-normalised ("intra-normalisation", Arandjelović & Zisserman 2013), then the vector is power-normalised
(signed power ``alpha``) and L2-normalised. PCA-whitening (learned on the split ``unsupervised_fit`` names: by
default, ``self``, the evaluated collection's own database images, unsupervised, never its queries or labels; the
training split with ``training``, the cross dataset with ``cross``, or a named dataset) projects to ``dim``
components divided by ``eigenvalue ** power`` (0.5 = full whitening), then L2.
"""

from __future__ import annotations

import numpy as np

from retrieval.featureless import featureless_rows


def l2_normalise(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """``x`` divided by its L2 norm along ``axis`` (plus ``eps``, so an all-zero row, an image without features,
    stays zero); same shape, the input's float dtype. For float32 or float64 input: in float16 the default ``eps``
    rounds to 0 and an all-zero row gives NaN."""
    return x / (np.linalg.norm(x, axis=axis, keepdims=True) + eps)


def train_codebook(x: np.ndarray, k: int, niter: int = 20, seed: int = 0) -> np.ndarray:
    """k-means centroids (k, D) float32 of the rows of ``x`` (N, D), any float dtype (cast to float32), with faiss's
    ``Kmeans`` (``niter`` iterations, seeded, at most 1000 training points per centroid: faiss samples above that).
    ValueError when N < k."""
    import faiss  # noqa: PLC0415

    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < k:
        raise ValueError(f"codebook: {len(x)} training descriptors cannot make {k} centroids")
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, max_points_per_centroid=1000)
    km.train(x)
    return km.centroids.copy()


def vlad(desc: np.ndarray, centroids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """VLAD of one image's descriptors ``desc`` (n, D) over ``centroids`` (k, D), both cast to float32: (k*D,)
    float32, the residuals to each descriptor's nearest centroid summed per centroid (Jégou et al., CVPR 2010),
    each centroid's block L2-normalised (intra-normalisation, Arandjelović & Zisserman, CVPR 2013; an empty block
    stays zero), then signed power ``sign(v) |v| ** alpha`` (``alpha`` 0.5: the signed square root, Jégou et al.,
    TPAMI 2012; 1: none) and L2. An image without descriptors (n = 0) gives the zero vector."""
    k, d = centroids.shape
    if len(desc) == 0:
        return np.zeros(k * d, np.float32)
    x = np.asarray(desc, np.float32)
    c = np.asarray(centroids, np.float32)
    dist = (x * x).sum(1, keepdims=True) - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    assign = np.argmin(dist, axis=1)
    v = np.zeros((k, d), np.float32)
    np.add.at(v, assign, x)
    v -= np.bincount(assign, minlength=k)[:, None].astype(np.float32) * c
    v = l2_normalise(v, axis=1) * (np.linalg.norm(v, axis=1, keepdims=True) > 0)
    v = np.sign(v) * np.abs(v) ** alpha
    return l2_normalise(v.reshape(-1)).astype(np.float32)


def fit_pca_whitening(x: np.ndarray, dim: int) -> dict[str, np.ndarray]:
    """PCA of the rows of x (N, D), computed in float64: mean (D,), projection (dim, D) with orthonormal rows (each
    component's sign fixed: its largest-magnitude coordinate positive), eigenvalues (dim,) descending, all returned
    as float32. ValueError when ``dim`` exceeds min(N - 1, D)."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    if dim > min(n - 1, d):
        raise ValueError(
            f"whitening: dim={dim} needs at least {dim + 1} training vectors of dimension >= {dim}; "
            f"got {n} vectors of dimension {d}"
        )
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    eig = (s**2) / max(n - 1, 1)
    # fix each component's sign (largest-magnitude coordinate positive) so the fit is reproducible
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    vt = vt * signs[:, None]
    return {
        "mean": mean.astype(np.float32),
        "projection": vt[:dim].astype(np.float32),
        "eigenvalues": eig[:dim].astype(np.float32),
    }


def whitening_applies(n_images: int, dim: int, min_images_per_dim: float) -> tuple[bool, str]:
    """Whether PCA-whitening to ``dim`` components may be learned from ``n_images`` vectors, and why.

    Full whitening divides each component by the square root of its eigenvalue, so it needs the small eigenvalues
    well estimated: a sample covariance of n vectors in d dimensions spreads them (Marchenko-Pastur: with d/n = 0.1
    the smallest is about (1 - sqrt(0.1))^2 = 0.47 of the true one; with d/n >= 1 they reach zero), and whitening
    then amplifies noise. Measured on real photos (README, "What is fitted, and on what"): whitening learned from
    85 or 1360 images in 1024-d lowered Medium mAP. So it is learned only from at least ``min_images_per_dim``
    images per output dimension (0: always)."""
    need = int(np.ceil(dim * min_images_per_dim))
    if n_images < need:
        return False, (
            f"off: {n_images} images < whiten.min_images_per_dim {min_images_per_dim} x whiten.dim {dim} = "
            f"{need}; the L2-normalised VLAD is used as it is"
        )
    return True, f"on: {n_images} images >= {need} (whiten.min_images_per_dim x whiten.dim)"


def identity_whitening(d: int, reason: str) -> dict[str, np.ndarray]:
    """The 'whitening' of a split too small to learn one: no projection, :func:`apply_whitening` only L2-normalises."""
    return {
        "applied": np.array(False),
        "reason": np.array(reason),
        "mean": np.zeros(d, np.float32),
        "projection": np.zeros((0, d), np.float32),
        "eigenvalues": np.zeros(0, np.float32),
    }


def apply_whitening(x: np.ndarray, w: dict[str, np.ndarray], power: float = 0.5, eps: float = 1e-9) -> np.ndarray:
    """Project, divide each component by eigenvalue**power, L2-normalise (x (N, D) float32 -> (N, dim) float32).

    A whitening stored with ``applied`` False (:func:`identity_whitening`) only L2-normalises (N, D). A zero row (an
    image without features) stays zero: centring would otherwise give every such image the same vector, an exact
    match of the others."""

    x = np.asarray(x, np.float32)
    if "applied" in w and not bool(w["applied"]):
        return l2_normalise(x).astype(np.float32)
    y = (x - w["mean"]) @ w["projection"].T
    y = y / (w["eigenvalues"] + eps) ** power
    y = l2_normalise(y).astype(np.float32)
    if len(x):
        y[featureless_rows(x)] = 0.0
    return y

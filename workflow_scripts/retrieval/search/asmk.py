"""ASMK, the aggregated selective match kernel (Tolias, Avrithis & Jégou, "To aggregate or not to aggregate:
selective match kernels for image search", ICCV 2013; IJCV 2016), as a first stage over local descriptors.

The maths runs in the ``asmk`` package (PyPI 0.1.1, a packaging of Jenicek & Tolias's reference implementation):
its faiss k-means codebook, multiple assignment, per-word aggregation of residuals binarised by sign, and the
selective kernel over the inverted file (IVF). The paper's kernel is ``sigma_alpha(u) = sign(u) |u|^alpha if u > tau
else 0``; the package computes ``u^alpha if u >= tau else 0`` (``functional.asmk_kernel``). For ``tau >= 0`` the two
agree except at ``u = tau`` exactly; a negative ``u`` raised to a fractional alpha is NaN, so
``asmk.similarity_threshold`` (tau) is limited to [0, 1] (ValueError from ``ASMKConfig`` otherwise). The
package's pickle cache is not used: the codebook is kept as ``.npz`` (``centroids``) and the inverted file as HDF5
(``kind = asmk_ivf``: one row per (image, visual word) aggregated residual), and the package's objects are rebuilt
from them through its own ``initialize_from_state`` / ``index`` entry points, so a reloaded index scores exactly as
the one the package built.

Score of query image q against database image x (the package's ``IVF.search`` with idf off):
``S(q, x) = sum_{c in C(q) & C(x)} sigma_alpha(b(Q_c) . b(X_c)) / sqrt(|C(q)| |C(x)|)`` where ``b`` is the
binarised aggregated residual, its similarity ``1 - 2 h / D`` (``h`` the Hamming distance; ``D`` the packed width,
32 ceil(d / 32) bits for d-dimensional residuals, which is d for SIFT's 128) and ``C(.)``
the image's visual words.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from retrieval.runtime import atomic_path, open_h5

IVF_KIND = "asmk_ivf"


IVF_SCHEMA = 1


MIN_POINTS_PER_CENTROID = 39  # faiss warns below this many training points per centroid


@dataclass(frozen=True)
class ASMKConfig:
    """The package's parameters (its ``examples/params/_eccv20_how.yml`` defaults).

    binary: residuals binarised by sign and compared by Hamming similarity (ASMK*); false: L2-normalised
    float residuals and the dot product. db_multiple_assignment / query_multiple_assignment: nearest visual
    words each descriptor is assigned to (the package: 1 for the database, 5 for the queries). alpha: the
    selective kernel's exponent; similarity_threshold: tau, similarities below it count 0. use_idf: the
    package's squared-log idf weights (off in its defaults). ValueError for a tau outside [0, 1]: the package
    raises a similarity to alpha without its sign (module docstring), so a negative tau would let negative
    similarities through as NaN or as positive scores."""

    binary: bool = True
    use_idf: bool = False
    db_multiple_assignment: int = 1
    query_multiple_assignment: int = 5
    alpha: float = 3.0
    similarity_threshold: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.similarity_threshold <= 1.0:
            raise ValueError(
                f"asmk.similarity_threshold: {self.similarity_threshold} is outside [0, 1] (the asmk package "
                "raises a word similarity to alpha without its sign, so a negative one would score NaN or positive)"
            )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ASMKConfig:
        """The parameters from the ``asmk`` config mapping: ``binary``, ``use_idf``, ``multiple_assignment``
        (``{db, query}``), ``alpha``, ``similarity_threshold``; KeyError for a missing key."""
        ma = cfg["multiple_assignment"]
        return cls(
            binary=cfg["binary"],
            use_idf=cfg["use_idf"],
            db_multiple_assignment=ma["db"],
            query_multiple_assignment=ma["query"],
            alpha=cfg["alpha"],
            similarity_threshold=cfg["similarity_threshold"],
        )

    def for_codebook(self, k: int) -> ASMKConfig:
        """These parameters on a codebook of ``k`` words: each multiple assignment at most ``k`` (faiss pads a
        search for more neighbours than the index holds with word ``-1``, which the package would take for the last
        word; a small collection's codebook can hold fewer words than ``asmk.multiple_assignment`` asks for)."""
        return replace(
            self,
            db_multiple_assignment=min(self.db_multiple_assignment, int(k)),
            query_multiple_assignment=min(self.query_multiple_assignment, int(k)),
        )

    def check_codebook(self, k: int, side: str) -> None:
        """ValueError when ``side``'s (``db`` or ``query``) multiple assignment asks for more than the ``k`` words
        there are (see :meth:`for_codebook`)."""
        n = getattr(self, f"{side}_multiple_assignment")
        if n > k:
            raise ValueError(
                f"{side} multiple assignment {n} is beyond the codebook's {k} visual words "
                f"(ASMKConfig.for_codebook({k}) caps it)"
            )


def _codebook(centroids: np.ndarray):
    """The package's ``Codebook`` indexing ``centroids (k, D)`` float32 (faiss flat L2, CPU)."""
    from asmk import codebook as cdb_pkg  # noqa: PLC0415
    from asmk import index as idx_pkg  # noqa: PLC0415

    centroids = np.ascontiguousarray(centroids, np.float32)
    cdb = cdb_pkg.Codebook(idx_pkg.initialize_index(None), size=int(centroids.shape[0]))
    cdb.index(centroids)
    return cdb


def _kernel(centroids: np.ndarray, cfg: ASMKConfig):
    from asmk import kernel as kern_pkg  # noqa: PLC0415

    cdb = _codebook(centroids)
    return cdb, kern_pkg.ASMKKernel(cdb, binary=cfg.binary)


def codebook_size(n_descriptors: int, k_max: int) -> int:
    """The visual words a fit split supports: ``k_max``, or the largest power of two with at least 39 descriptors
    per word (faiss's minimum per centroid) when the split is smaller (a small collection fitted on itself:
    85 images x 1000 descriptors give 2048 words). Raises ValueError below 2 words."""
    if n_descriptors >= MIN_POINTS_PER_CENTROID * k_max:
        return int(k_max)
    k = 1 << int(np.floor(np.log2(max(n_descriptors // MIN_POINTS_PER_CENTROID, 1))))
    if k < 2:
        raise ValueError(
            f"{n_descriptors} descriptors cannot make an ASMK codebook: faiss k-means needs at least "
            f"{MIN_POINTS_PER_CENTROID} per word and ASMK at least 2 words"
        )
    return k


def fit_codebook(x: np.ndarray, k: int, source: str = "training descriptors") -> np.ndarray:
    """Visual words by the package's faiss k-means (``Codebook.train``: 10 iterations, faiss's seed).

    x: (N, D) float32 descriptors. Returns centroids (k, D) float32. Raises ValueError when
    N < 39 k (faiss's minimum points per centroid), naming ``source``."""
    from asmk import codebook as cdb_pkg  # noqa: PLC0415
    from asmk import index as idx_pkg  # noqa: PLC0415

    if len(x) < MIN_POINTS_PER_CENTROID * k:
        raise ValueError(
            f"{source}: {len(x)} descriptors for an ASMK codebook of {k} visual words; faiss k-means needs "
            f"at least {MIN_POINTS_PER_CENTROID} per word ({MIN_POINTS_PER_CENTROID * k}): lower asmk.codebook.k "
            f"to at most {len(x) // MIN_POINTS_PER_CENTROID} or use a larger training_split"
        )
    cdb = cdb_pkg.Codebook(idx_pkg.initialize_index(None), size=int(k))
    cdb.train(np.ascontiguousarray(x, np.float32))
    return np.ascontiguousarray(cdb.centroids, np.float32)


def centroids_digest(centroids: np.ndarray) -> str:
    """SHA-1 of the centroids' bytes: an inverted file records the codebook it was built with."""

    return hashlib.sha1(np.ascontiguousarray(centroids, np.float32).tobytes()).hexdigest()


def aggregate_images(
    centroids: np.ndarray, desc: np.ndarray, image_ids: np.ndarray, cfg: ASMKConfig
) -> dict[str, np.ndarray]:
    """The database side: every image's descriptors assigned to their ``db_multiple_assignment`` nearest words,
    residuals summed per (image, word) and binarised (the package's ``Codebook.quantize`` + ``ASMKKernel.aggregate``).

    desc: (M, D) float32; image_ids: (M,) int, non-decreasing. Returns ``codes`` (R, ceil(D/32)) uint32 (binary; bit
    order the package's: the first dimension in the highest bit) or (R, D) float32, ``words`` (R,) int32 and
    ``images`` (R,) int32, one row per (image, word), images in order. Images without descriptors get no row.
    ValueError when ``cfg`` assigns database descriptors to more words than ``centroids`` holds (see :meth:`ASMKConfig.for_codebook`)."""
    cfg.check_codebook(len(centroids), "db")
    _, kernel = _kernel(centroids, cfg)
    width = (desc.shape[1] + 31) // 32 if cfg.binary else desc.shape[1]
    if len(desc) == 0:
        return {
            "codes": np.zeros((0, width), np.uint32 if cfg.binary else np.float32),
            "words": np.zeros(0, np.int32),
            "images": np.zeros(0, np.int32),
        }
    if np.any(np.diff(image_ids) < 0):
        raise ValueError("aggregate_images: image_ids must be non-decreasing (descriptors grouped by image)")
    quantized = kernel.codebook.quantize(
        np.ascontiguousarray(desc, np.float32), np.asarray(image_ids), multiple_assignment=cfg.db_multiple_assignment
    )
    codes, words, images = kernel.aggregate(*quantized)
    return {"codes": np.ascontiguousarray(codes), "words": words.astype(np.int32), "images": images.astype(np.int32)}


def build_ivf(
    codes: np.ndarray, words: np.ndarray, images: np.ndarray, n_images: int, codebook_size: int, use_idf: bool
):
    """The package's ``IVF`` holding the given (image, word) rows, built from its state (what ``IVF.add`` of the
    same rows in image order gives: per word its rows in image order, ``norm_factor`` the number of words of each
    image, or the sum of their idf ``log(n_images / count_c)^2`` with idf on)."""
    from asmk import inverted_file as ivf_pkg  # noqa: PLC0415

    counts = np.bincount(words, minlength=codebook_size).astype(np.int32)
    idf = np.ones(codebook_size, np.float32)
    if use_idf:
        seen = counts > 0
        idf[seen] = (np.log(n_images / counts[seen]) ** 2).astype(np.float32)
    norm_factor = np.bincount(
        images, weights=idf[words].astype(np.float64) if use_idf else None, minlength=n_images
    ).astype(np.float64)
    order = np.argsort(words, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    ivf_vecs: list[np.ndarray | None] = [None] * codebook_size
    ivf_image_ids: list[np.ndarray | None] = [None] * codebook_size
    for w in np.flatnonzero(counts):
        rows = order[bounds[w] : bounds[w + 1]]
        ivf_vecs[w] = codes[rows]
        ivf_image_ids[w] = images[rows].astype(np.int64)
    state = {
        "type": "IVF",
        "params": {"use_idf": bool(use_idf)},
        "state": {
            "norm_factor": norm_factor,
            "n_images": int(n_images),
            "ivf_vecs": ivf_vecs,
            "ivf_image_ids": ivf_image_ids,
            "counts": counts,
            "idf": idf,
            "imid_offset": 0,
        },
    }
    return ivf_pkg.IVF.initialize_from_state(state)


def write_ivf(
    path: str | Path, agg: dict[str, np.ndarray], n_images: int, centroids: np.ndarray, cfg: ASMKConfig, **attrs: Any
) -> None:
    """The inverted file in the project's HDF5: ``codes``, ``words``, ``images`` as :func:`aggregate_images`
    returns them, ``n_words (n_images,)`` int32; attributes ``kind``, ``schema_version``, ``n_images``,
    ``codebook_size``, ``codebook_sha1``, the kernel configuration and ``attrs``."""

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name in ("codes", "words", "images"):
            f.create_dataset(name, data=agg[name])
        f.create_dataset("n_words", data=np.bincount(agg["images"], minlength=n_images).astype(np.int32))
        f.attrs.update(
            {
                "schema_version": IVF_SCHEMA,
                "kind": IVF_KIND,
                "n_images": int(n_images),
                "codebook_size": int(centroids.shape[0]),
                "codebook_sha1": centroids_digest(centroids),
                "binary": cfg.binary,
                "db_multiple_assignment": cfg.db_multiple_assignment,
                **attrs,
            }
        )


def read_ivf(path: str | Path, centroids: np.ndarray, cfg: ASMKConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and attributes of an inverted file, checked: kind and schema, built with these ``centroids`` and the
    same binarisation and database assignment as ``cfg``, words and images inside their ranges. Raises ValueError
    naming the file."""

    path = Path(path)
    with open_h5(path) as f:
        a = dict(f.attrs)
        if a.get("kind") != IVF_KIND or a.get("schema_version") != IVF_SCHEMA:
            raise ValueError(
                f"{path}: not an ASMK inverted file of schema {IVF_SCHEMA} (kind={a.get('kind')!r}, "
                f"schema_version={a.get('schema_version')!r})"
            )
        arrays = {name: f[name][:] for name in ("codes", "words", "images", "n_words")}
    if a["codebook_sha1"] != centroids_digest(centroids):
        raise ValueError(
            f"{path}: built with another codebook (sha1 {a['codebook_sha1']}, this one {centroids_digest(centroids)})"
        )
    if bool(a["binary"]) != cfg.binary or int(a["db_multiple_assignment"]) != cfg.db_multiple_assignment:
        raise ValueError(
            f"{path}: built with binary={bool(a['binary'])}, db multiple assignment "
            f"{int(a['db_multiple_assignment'])}; asked for {cfg.binary}, {cfg.db_multiple_assignment}"
        )
    n, k = int(a["n_images"]), int(a["codebook_size"])
    rows = len(arrays["words"])
    if len(arrays["images"]) != rows or len(arrays["codes"]) != rows:
        raise ValueError(f"{path}: codes, words and images differ in length")
    if rows and (
        arrays["words"].min() < 0
        or arrays["words"].max() >= k
        or arrays["images"].min() < 0
        or arrays["images"].max() >= n
    ):
        raise ValueError(f"{path}: a word outside 0..{k - 1} or an image outside 0..{n - 1}")
    return arrays, a


class ASMKIndex:
    """Codebook, kernel and inverted file ready to score queries.

    centroids: (k, D) float32; ivf_arrays: as :func:`aggregate_images`; n_images: database size. ValueError when
    ``cfg`` assigns query descriptors to more words than ``centroids`` holds (see :meth:`ASMKConfig.for_codebook`)."""

    def __init__(self, centroids: np.ndarray, ivf_arrays: dict[str, np.ndarray], n_images: int, cfg: ASMKConfig):
        cfg.check_codebook(len(centroids), "query")
        self.cfg = cfg
        self.codebook, self.kernel = _kernel(centroids, cfg)
        self.n_images = int(n_images)
        self.ivf = build_ivf(
            ivf_arrays["codes"],
            ivf_arrays["words"],
            ivf_arrays["images"],
            self.n_images,
            int(centroids.shape[0]),
            cfg.use_idf,
        )

    def score(self, desc: np.ndarray) -> np.ndarray:
        """ASMK similarity of one query image's descriptors ``desc (m, D)`` to every database image: (n_images,)
        float32, 0 where no word is shared (and for a query without descriptors)."""
        scores = np.zeros(self.n_images, np.float32)
        if len(desc) == 0 or self.n_images == 0:
            return scores
        c = self.cfg
        des, words = self.codebook.quantize(
            np.ascontiguousarray(desc, np.float32), multiple_assignment=c.query_multiple_assignment
        )
        qcodes, qwords = self.kernel.aggregate_image(des, words)

        def similarity(qvec, vecs, image_ids):
            return self.kernel.similarity(
                qvec, vecs, image_ids, alpha=c.alpha, similarity_threshold=c.similarity_threshold
            )

        ranks, s = self.ivf.search(qcodes, qwords, similarity_func=similarity, topk=None)
        scores[ranks] = s
        return scores


def rank_by_score(scores: np.ndarray, db_has_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full rankings from ASMK scores ``(n_q, n_db)``: descending score, ties in database order, and database images
    without descriptors after every other image (in database order) with score ``-inf``. Returns ids int32 and
    sims float32, both (n_q, n_db)."""
    s = np.where(db_has_features[None, :], scores.astype(np.float32), -np.inf).astype(np.float32)
    ids = np.argsort(-s, axis=1, kind="stable").astype(np.int32)
    return ids, np.take_along_axis(s, ids, axis=1)


def search_queries(
    index: ASMKIndex, q_local: h5py.File, db_has_features: np.ndarray, block: int = 64
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """ASMK search (Tolias et al., ICCV 2013; the ``asmk`` package's kernel): score every query of an open local
    store ``q_local`` (``descriptors`` (n_q, K, D) float16, ``count`` (n_q,)), read ``block`` queries at a time,
    against the index (:meth:`ASMKIndex.score`: the selective match kernel summed over shared visual words), and
    rank the database (:func:`rank_by_score`; ``db_has_features`` (n_db,) bool). A query without descriptors
    scores 0 everywhere.

    Returns ids (n_q, n_db) int32, sims (n_q, n_db) float32 and timing: ``reads_seconds`` (query descriptors read
    from the store), ``search_seconds`` (quantisation, aggregation and the inverted-file search: the query side),
    ``queries_without_features`` (indices)."""
    n_q = q_local["count"].shape[0]
    scores = np.zeros((n_q, index.n_images), np.float32)
    reads = search = 0.0
    empty = []
    for s in range(0, n_q, block):
        t0 = time.time()
        desc = q_local["descriptors"][s : s + block]
        count = q_local["count"][s : s + block]
        t1 = time.time()
        reads += t1 - t0
        for j, (d, c) in enumerate(zip(desc, count)):
            if c == 0:
                empty.append(s + j)
            scores[s + j] = index.score(d[:c].astype(np.float32))
        search += time.time() - t1
    t2 = time.time()
    ids, sims = rank_by_score(scores, db_has_features)
    search += time.time() - t2
    return ids, sims, {"reads_seconds": reads, "search_seconds": search, "queries_without_features": empty}

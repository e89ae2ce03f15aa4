"""Memory requests of the jobs whose size follows their data: Snakemake's ``mem_mb`` (megabytes), what a SLURM
profile asks the scheduler for. Pure functions of the sizes the workflow reads while it builds the DAG
(``rules/common.smk`` reads the lists and the feature cache's plan, and passes the counts here), so the models are
unit-tested apart from Snakemake; the other rules ask fixed amounts, written in their ``.smk``.
"""

from __future__ import annotations

# bytes held per (query, ranked column) pair and ranking: ids, similarities and the search's blocks. Measured for
# knn in a new user's trial (6,000 x 6,000: 1,200 MB) and for the evaluations (70 queries x 1M: about 2.3 GB).
BYTES_PER_RANKED_PAIR = 32

# above this many (query, column) pairs a full ranking (knn.k 0) of a collection without ground truth is warned of
FULL_RANKING_WARN_PAIRS = 10**8

# a pack job holds its rows until it writes them (retrieval.stages.extract_pack): SIFT measured about 0.3 MB per
# image at k 1000 (2,020 images in one job: 82 to 665 MB); a deep backbone's K x dim x 2 bytes, 1.1 MB for DINOv2 at
# K 700. Bases: the interpreter, and torch and the model for a deep backbone.
PACK_BASE_MB = {"sift": 2000, "deep": 4000}
PACK_MB_PER_IMAGE = {"sift": (0.35, 1000), "deep": (2.0, 700)}  # (MB per image, at this k)

# an IVF-PQ search (knn.search: ivfpq) holds its training sample, (n_train, D) float32, and faiss's training makes a
# copy of it (the residuals to the coarse centroids): measured, a 20,000 x 2048 sample of 164 MB, training added
# 178 MB; at the defaults on a million 8192-d VLADs (156,000 vectors for nlist 4000) that is about 11 GB
IVFPQ_TRAIN_COPIES = 2.2


def ranking_columns(n_db: int, k: int) -> int:
    """The columns a ranking holds per query: the whole database with ``knn.k`` 0, else ``min(k, n_db)``."""
    if n_db < 0 or k < 0:
        raise ValueError(f"sizes must be >= 0, got n_db={n_db}, k={k}")
    return n_db if k == 0 else min(k, n_db)


def ranking_pairs(n_queries: int, n_db: int, k: int) -> int:
    """(query, column) pairs of a dataset's neighbours or full ranking (``knn.k`` 0: every database image)."""
    return n_queries * ranking_columns(n_db, k)


def ranking_mem_mb(base: int, n_queries: int, n_db: int, k: int, rankings: int = 1) -> int:
    """``mem_mb`` (MB) of a job that holds a dataset's neighbours or full ranking (knn, and every evaluation):
    ``base`` plus ``BYTES_PER_RANKED_PAIR`` (32) bytes per (query, column) pair and ranking held (``rankings``: ssp
    evaluates three query sets). 70 queries x 1,000,000 images with ``k`` 0 and a base of 2000 ask 4240 MB.
    ValueError for negative sizes."""
    if n_queries < 0 or rankings < 1:
        raise ValueError(f"expected n_queries >= 0 and rankings >= 1, got {n_queries}, {rankings}")
    return int(base + rankings * BYTES_PER_RANKED_PAIR * ranking_pairs(n_queries, n_db, k) / 1e6)


def pack_mem_mb(backbone: str, k: int, n_images: int) -> int:
    """``mem_mb`` (MB) of a feature-cache pack job extracting ``n_images`` photos with ``k`` descriptors each: the
    base (2000 for SIFT, 4000 for a deep backbone) plus the rows it holds until it writes them. A SIFT pack of
    ``extract.max_chunk_images`` (1000) photos at k 1000 asks 2350 MB; the fixed 2000 MB asked before was passed at
    about 6,500 images. ValueError for negative sizes."""
    if k < 0 or n_images < 0:
        raise ValueError(f"sizes must be >= 0, got k={k}, n_images={n_images}")
    kind = "sift" if backbone == "sift" else "deep"
    per_image, at_k = PACK_MB_PER_IMAGE[kind]
    return int(PACK_BASE_MB[kind] + per_image * k / at_k * n_images)


def ivfpq_mem_mb(n_train: int, dim: int, n_db: int, m: int) -> int:
    """MB an IVF-PQ search adds to its job (``knn``, ``search_knn``): ``IVFPQ_TRAIN_COPIES`` (2.2) x the (n_train,
    dim) float32 training sample, plus the index's codes and ids, ``m`` + 8 bytes per database vector. 156,000 x
    8192 training vectors and a million codes of 32 bytes: 11285 MB. ValueError for negative sizes."""
    if min(n_train, dim, n_db, m) < 0:
        raise ValueError(f"sizes must be >= 0, got n_train={n_train}, dim={dim}, n_db={n_db}, m={m}")
    return int((IVFPQ_TRAIN_COPIES * n_train * dim * 4 + n_db * (m + 8)) / 1e6)

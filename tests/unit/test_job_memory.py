"""The memory requests (mem_mb) of the jobs whose size follows their data, against the figures they were set from."""

import pytest

from retrieval.job_memory import pack_mem_mb, ranking_columns, ranking_mem_mb, ranking_pairs


def test_a_full_ranking_holds_every_database_image_and_a_shortlist_k():
    assert ranking_columns(5000, 0) == 5000  # knn.k 0: the full ranking
    assert ranking_columns(5000, 100) == 100
    assert ranking_columns(50, 100) == 50  # k above the database: the database
    assert ranking_pairs(70, 1_000_000, 0) == 70_000_000
    with pytest.raises(ValueError, match="n_db=-1"):
        ranking_columns(-1, 0)


def test_ranking_memory_is_32_bytes_a_pair_and_ranking_over_the_base():
    # the README's figures: a new user's 6,000 x 6,000 folder (1,152 MB of ranking over knn's base)
    assert ranking_mem_mb(4000, 6000, 6000, 0) == 4000 + 1152
    # 70 queries x 1M distractors with a shortlist of 100: the shortlist's columns only
    assert ranking_mem_mb(2000, 70, 1_000_000, 100) == 2000
    assert ranking_mem_mb(2000, 70, 1_000_000, 0) == 2000 + 2240
    # landmarks-mini+1m's evaluate_sv (README: 4,512 MB) and ssp's three query sets
    assert ranking_mem_mb(4000, 16, 1_000_085, 0) == 4512
    assert ranking_mem_mb(4000, 16, 1_000_085, 0, rankings=3) == 4000 + 1536  # 3 x 512.04 MB
    with pytest.raises(ValueError, match="rankings >= 1"):
        ranking_mem_mb(4000, 16, 85, 0, rankings=0)


def test_a_pack_asks_for_its_rows_by_backbone_and_k():
    assert pack_mem_mb("sift", 1000, 1000) == 2350  # extract.max_chunk_images at k 1000
    assert pack_mem_mb("sift", 1000, 919) == 2321  # the 10,100-photo folder's packs (a workflow test)
    assert pack_mem_mb("sift", 500, 1000) == 2175  # fewer descriptors, fewer bytes
    assert pack_mem_mb("dinov2", 700, 1000) == 4000 + 2000  # K x dim x 2 bytes: 2 MB an image at K 700
    assert pack_mem_mb("resnet", 350, 100) == 4100
    assert pack_mem_mb("sift", 1000, 0) == 2000
    with pytest.raises(ValueError, match="n_images=-5"):
        pack_mem_mb("sift", 1000, -5)

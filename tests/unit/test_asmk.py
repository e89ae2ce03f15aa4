"""ASMK through the asmk package: the selective kernel on hand-worked cases, matching images above unrelated ones,
and the inverted file kept in our HDF5 scoring exactly as the package's own index."""

from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from retrieval.runtime import write_json
from retrieval.search.asmk import (
    ASMKConfig,
    ASMKIndex,
    aggregate_images,
    codebook_size,
    fit_codebook,
    rank_by_score,
    read_ivf,
    write_ivf,
)
from retrieval.stages.asmk import asmk_search, build_asmk_ivf, fit_asmk_codebook
from retrieval.stores.global_store import read_featureless, read_first_stage, read_neighbours, write_neighbours
from retrieval.stores.local_store import write_local_chunk

D = 32


def _centroids(k=4, d=D, scale=10.0):
    c = np.zeros((k, d), np.float32)
    for i in range(k):
        c[i, i] = scale
    return c


def _index(centroids, per_image, cfg, tmp_path=None):
    desc = np.concatenate(per_image).astype(np.float32)
    ids = np.repeat(np.arange(len(per_image)), [len(x) for x in per_image])
    agg = aggregate_images(centroids, desc, ids, cfg)
    if tmp_path is not None:  # through our file format
        write_ivf(tmp_path / "ivf.h5", agg, len(per_image), centroids, cfg)
        agg, _ = read_ivf(tmp_path / "ivf.h5", centroids, cfg)
    return ASMKIndex(centroids, agg, len(per_image), cfg)


def _bits(v):
    return v > 0


def test_single_word_score_is_the_thresholded_cubed_hamming_similarity():
    """One descriptor per image, all in word 0: S = sigma_alpha(1 - 2 h / D), 0 below tau (ICCV 2013, eq. 7-8)."""
    rng = np.random.default_rng(0)
    c = _centroids()
    q = c[0] + rng.normal(size=D).astype(np.float32)
    db = [c[0] + rng.normal(size=D).astype(np.float32) for _ in range(12)]
    db.append(c[0] + (c[0] - q))  # the residual's exact opposite: similarity -1
    cfg = ASMKConfig(db_multiple_assignment=1, query_multiple_assignment=1)
    got = _index(c, [x[None] for x in db], cfg).score(q[None])
    h = np.array([np.sum(_bits(q - c[0]) != _bits(x - c[0])) for x in db])
    sim = 1 - 2 * h / D
    expected = np.where(sim >= 0, np.abs(sim) ** 3, 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert got[-1] == 0 and (sim < 0).any() and (sim > 0).any()
    # a higher tau silences the weak matches that tau 0 kept
    strict = _index(
        c,
        [x[None] for x in db],
        ASMKConfig(db_multiple_assignment=1, query_multiple_assignment=1, similarity_threshold=0.5),
    ).score(q[None])
    np.testing.assert_allclose(strict, np.where(sim >= 0.5, sim**3, 0.0), rtol=1e-6, atol=1e-7)
    assert (strict < got).any()


def test_a_negative_tau_is_refused_in_the_config_and_the_schema():
    """The package scores u**alpha without sign(u): with tau < 0 a negative similarity scored NaN (alpha 2.5) or
    positive (alpha 2); tau is therefore limited to [0, 1], by ASMKConfig and by the schema (helper-106)."""
    with pytest.raises(ValueError, match=r"asmk.similarity_threshold: -0.5 is outside \[0, 1\]"):
        ASMKConfig(similarity_threshold=-0.5)
    ASMKConfig(similarity_threshold=0.0)
    ASMKConfig(similarity_threshold=1.0)
    repo = Path(__file__).resolve().parents[2]
    schema = yaml.safe_load((repo / "config" / "schema.yaml").read_text())
    node = schema["properties"]["asmk"]["properties"]["similarity_threshold"]
    with pytest.raises(jsonschema.ValidationError, match="less than the minimum of 0"):
        jsonschema.validate(-0.5, node)
    jsonschema.validate(0.0, node)


def test_images_sharing_descriptors_score_above_unrelated_ones():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(64 * 40, D)).astype(np.float32)
    centroids = fit_codebook(train, 64)
    scene = rng.normal(size=(60, D)).astype(np.float32)
    views = [scene + 0.15 * rng.normal(size=scene.shape).astype(np.float32) for _ in range(2)]
    unrelated = [rng.normal(size=(60, D)).astype(np.float32) for _ in range(5)]
    index = _index(centroids, [views[0], *unrelated], ASMKConfig())
    s = index.score(views[1])
    assert s[0] > 2 * s[1:].max() and s[0] > 0
    assert np.argmax(s) == 0


@pytest.mark.parametrize("use_idf", [False, True])
@pytest.mark.parametrize("binary", [True, False])
def test_our_stored_index_scores_exactly_as_the_package_built_one(tmp_path, binary, use_idf):
    from asmk import ASMKMethod  # noqa: PLC0415
    from asmk import codebook as cdb_pkg  # noqa: PLC0415
    from asmk import index as idx_pkg  # noqa: PLC0415

    rng = np.random.default_rng(2)
    centroids = fit_codebook(rng.normal(size=(32 * 40, D)).astype(np.float32), 32)
    counts = rng.integers(5, 40, size=15)
    db = [rng.normal(size=(n, D)).astype(np.float32) for n in counts]
    queries = [x[: len(x) // 2] + 0.2 * rng.normal(size=(len(x) // 2, D)).astype(np.float32) for x in db[:4]]
    cfg = ASMKConfig(binary=binary, use_idf=use_idf)
    ours = _index(centroids, db, cfg, tmp_path)

    params = {
        "index": {"gpu_id": None},
        "build_ivf": {
            "kernel": {"binary": binary},
            "ivf": {"use_idf": use_idf},
            "quantize": {"multiple_assignment": 1},
            "aggregate": {},
        },
        "query_ivf": {
            "quantize": {"multiple_assignment": 5},
            "aggregate": {},
            "search": {"topk": None},
            "similarity": {"similarity_threshold": 0.0, "alpha": 3.0},
        },
    }
    cdb = cdb_pkg.Codebook(idx_pkg.initialize_index(None), size=len(centroids))
    cdb.index(centroids)
    method = ASMKMethod(params, {}, codebook=cdb).build_ivf(np.concatenate(db), np.repeat(np.arange(len(db)), counts))
    _, imids, ranks, scores = method.query_ivf(
        np.concatenate(queries), np.repeat(np.arange(len(queries)), [len(q) for q in queries])
    )
    assert list(imids) == list(range(len(queries)))
    for i, q in enumerate(queries):
        got = ours.score(q)
        np.testing.assert_array_equal(got[ranks[i]], scores[i].astype(np.float32))
        assert got.max() > 0


def test_ranking_ties_in_database_order_and_images_without_features_last():
    scores = np.array([[0.0, 0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    has = np.array([True, True, False, True, True])
    ids, sims = rank_by_score(scores, has)
    assert ids.tolist() == [[1, 3, 0, 4, 2], [0, 1, 3, 4, 2]]
    assert np.isneginf(sims[:, -1]).all() and sims[0, 0] == 0.5


def test_a_query_without_descriptors_matches_nothing():
    c = _centroids()
    index = _index(c, [c[:1] + 1, c[1:2] + 1], ASMKConfig().for_codebook(len(c)))
    assert (index.score(np.zeros((0, D), np.float32)) == 0).all()


def test_store_refuses_another_codebook_and_too_few_training_points(tmp_path):
    rng = np.random.default_rng(3)
    c = _centroids()
    cfg = ASMKConfig()
    agg = aggregate_images(c, c[:2] + 0.5, np.array([0, 1]), cfg)
    write_ivf(tmp_path / "ivf.h5", agg, 2, c, cfg)
    with pytest.raises(ValueError, match="another codebook"):
        read_ivf(tmp_path / "ivf.h5", c * 2, cfg)
    with pytest.raises(ValueError, match="binary=True"):
        read_ivf(tmp_path / "ivf.h5", c, ASMKConfig(binary=False))
    with pytest.raises(ValueError, match="demo-train: 100 descriptors .* at most 2"):
        fit_codebook(rng.normal(size=(100, D)).astype(np.float32), 8, source="demo-train")


def test_codebook_size_follows_the_descriptors_a_split_has():

    assert codebook_size(643_842, 8192) == 8192  # demo-train: 78.6 per word
    assert codebook_size(85_000, 8192) == 2048  # landmarks-mini's own 85 images x 1000: 2179 words' worth
    assert codebook_size(272_000, 8192) == 4096
    assert codebook_size(39 * 2, 8192) == 2
    with pytest.raises(ValueError, match="at least 39 per word"):
        codebook_size(50, 8192)


def _local_store(path, per_image):
    rows = [
        {
            "descriptors": x.astype(np.float16),
            "xy": np.zeros((len(x), 2), np.float32),
            "scale": np.ones(len(x), np.float32),
            "weight": np.ones(len(x), np.float32),
            "orientation": np.zeros(len(x), np.float32),
            "image_size": np.array([10, 10], np.int32),
        }
        for x in per_image
    ]
    k = max(1, max(len(x) for x in per_image))
    write_local_chunk(path, rows, k=k, dim=D, backbone="sift", row_start=0, n_total=len(rows))


def test_a_multiple_assignment_beyond_a_small_codebook_is_capped_at_its_words(tmp_path, caplog):
    """A collection's codebook of 4 words with asmk.multiple_assignment 5: faiss padded the fifth neighbour with word
    -1, the inverted file was written with it and every search then failed on it. The stages cap the assignment at
    the codebook (a warning names the key), score as multiple assignment 4 does, and record what they used; images
    without descriptors are recorded in the knn file, so the results count them."""
    rng = np.random.default_rng(5)
    c = _centroids()
    np.savez(tmp_path / "codebook.npz", centroids=c)
    db = [c[i % 4] + rng.normal(size=(6, D)).astype(np.float32) for i in range(4)] + [np.zeros((0, D), np.float32)]
    queries = [db[1][:3] + 0.1, np.zeros((0, D), np.float32)]
    _local_store(tmp_path / "db.h5", db)
    _local_store(tmp_path / "q.h5", queries)
    write_json(
        tmp_path / "lists.json",
        {"query": [{"name": f"q{i}"} for i in range(2)], "db": [{"name": f"d{i}"} for i in range(5)]},
    )
    cfg = {
        "binary": True,
        "use_idf": False,
        "multiple_assignment": {"db": 5, "query": 5},
        "alpha": 3.0,
        "similarity_threshold": 0.0,
    }
    with pytest.raises(ValueError, match="db multiple assignment 5 is beyond the codebook's 4 visual words"):
        aggregate_images(c, db[0], np.zeros(6, np.int64), ASMKConfig.from_config(cfg))
    with pytest.raises(ValueError, match="query multiple assignment 5 is beyond"):
        ASMKIndex(c, aggregate_images(c, db[0], np.zeros(6, np.int64), ASMKConfig()), 1, ASMKConfig())
    with caplog.at_level("WARNING"):
        build_asmk_ivf(tmp_path / "db.h5", tmp_path / "codebook.npz", tmp_path / "ivf.h5", cfg, version="v")
        asmk_search(
            tmp_path / "q.h5", tmp_path / "ivf.h5", tmp_path / "codebook.npz", tmp_path / "lists.json",
            tmp_path / "knn.h5", cfg, version="v",
        )  # fmt: skip
    assert "asmk.multiple_assignment.db 5 is beyond the 4 visual words" in caplog.text
    assert "asmk.multiple_assignment.query 5" in caplog.text
    capped = ASMKConfig(db_multiple_assignment=4, query_multiple_assignment=4)
    arrays, _ = read_ivf(tmp_path / "ivf.h5", c, capped)
    assert arrays["words"].min() >= 0
    ids, sims, attrs = read_neighbours(tmp_path / "knn.h5")
    expected = _index(c, db[:4], capped).score(queries[0].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(sims[0][:4], np.sort(expected)[::-1])
    assert ids[0][-1] == 4 and np.isneginf(sims[0][-1])  # the database image without descriptors: no match
    assert ids[1].tolist() == [0, 1, 2, 3, 4] and np.isneginf(sims[1]).all()  # the query without: as everywhere
    assert (attrs["codebook_size"], attrs["db_multiple_assignment"], attrs["query_multiple_assignment"]) == (4, 4, 4)
    q_none, db_none = read_featureless(tmp_path / "knn.h5", 2, 5)
    assert q_none.tolist() == [False, True] and db_none.tolist() == [False] * 4 + [True]
    # what every results JSON reading this shortlist records as its first stage: the capped values, not the config's
    assert read_first_stage(tmp_path / "knn.h5") == {
        "method": "asmk",
        "knn": str(tmp_path / "knn.h5"),
        "codebook_size": 4,
        "db_multiple_assignment": 4,
        "query_multiple_assignment": 4,
    }
    write_neighbours(tmp_path / "vlad.h5", ids, sims, n_db=5, search="exact")
    assert read_first_stage(tmp_path / "vlad.h5") is None
    write_neighbours(tmp_path / "old.h5", ids, sims, n_db=5, search="asmk")  # an ASMK file without what it used
    with pytest.raises(KeyError, match="old.h5: an ASMK ranking without codebook_size"):
        read_first_stage(tmp_path / "old.h5")


def test_a_collection_too_small_for_a_codebook_is_named_with_the_way_out(tmp_path):
    """A folder of a few blank or tiny photos fitted on itself: the error names the store, the split and the key to
    change (a new user's trial got '49 descriptors cannot make an ASMK codebook' and nothing else)."""
    rng = np.random.default_rng(6)
    _local_store(tmp_path / "db.h5", [rng.normal(size=(20, D)).astype(np.float32), np.zeros((0, D), np.float32)])
    with pytest.raises(ValueError) as e:
        fit_asmk_codebook(
            tmp_path / "db.h5", tmp_path / "cb.npz", tmp_path / "m.json", k=8192, max_descriptors=1000, seed=0,
            version="v", config={}, preset="test", training_split="three", local_version="l",
        )  # fmt: skip
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'db.h5'}: the ASMK codebook of three (2 images): 20 descriptors cannot")
    assert message.endswith(
        "(unsupervised_fit: training, or a dataset's name; for the training split's own fit, a larger training_split)"
    )
    assert not (tmp_path / "cb.npz").exists()

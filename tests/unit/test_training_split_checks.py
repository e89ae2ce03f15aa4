"""A labelled training split that cannot train what it is for is refused naming the split, its lists file and the
keys: one of unique labels or all -1 (helper-140) failed inside Lw's fit ("needs matching pairs; got 0") and
AMES's training loop ("training: no anchor ..."), naming neither."""

import numpy as np
import pytest

from retrieval.data.gnd import check_validation_positives
from retrieval.features.vlad import l2_normalise
from retrieval.methods.ames.train import TrainConfig
from retrieval.methods.lw import pair_span
from retrieval.runtime import write_json
from retrieval.stages.ames import check_training_anchors, make_validator
from retrieval.stages.lw import fit_lw_stage
from retrieval.stores.global_store import write_global, write_neighbours


def _lw(tmp_path, labels, max_pairs=1000):
    x = l2_normalise(np.random.default_rng(0).normal(size=(len(labels), 6)).astype(np.float32))
    write_global(tmp_path / "g.h5", x)
    write_json(tmp_path / "lists.json", {"db": [{"label": int(v)} for v in labels]})
    cfg = {"max_pairs": max_pairs, "seed": 0, "ridge": 0.1}
    fit_lw_stage(tmp_path / "g.h5", tmp_path / "lists.json", tmp_path / "w.npz", tmp_path / "m.json", cfg, "v", "cpu",
                 "mytrain", "g")  # fmt: skip


def test_lw_refuses_a_split_without_two_same_label_pairs_naming_it(tmp_path):
    with pytest.raises(ValueError) as e:
        _lw(tmp_path, np.arange(8))  # every label unique: no pair
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'lists.json'}: training split 'mytrain' gives Lw whitening 0 same-label")
    assert "of its 8 labelled images" in msg and "choose another training_split" in msg
    with pytest.raises(ValueError, match="gives Lw whitening 1 same-label pair"):
        _lw(tmp_path, [0, 0, 1, 2, 3])
    _lw(tmp_path, [0, 0, 0, 1, 2])  # three pairs: fitted
    assert (tmp_path / "w.npz").is_file()


def test_lw_from_fewer_pairs_than_dimensions_is_fitted_with_a_warning(tmp_path, caplog):
    """Pair differences spanning fewer directions than the dimension leave the rest to the ridge: said, not silent.
    A label of n images spans n - 1 directions whatever its C(n, 2) pairs (helper-151: the pair count overstated),
    and the span is that of the pairs lw.max_pairs kept (helper-154: the whole split's overstated it)."""
    with caplog.at_level("WARNING", logger="retrieval.stages.lw"):
        _lw(tmp_path, [0, 0, 0, 0, 1, 1, 2])  # 7 pairs (6 + 1) of 6 images in 2 labels: span 4 of dimension 6
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "'mytrain' gives 7 same-label pairs (of 6 images in 2 labels) for dimension 6" in said[0]
    assert "span at most 4 of the 6 directions" in said[0] and "More images per label" in said[0]
    assert "lw.ridge (0.1 x the mean eigenvalue) alone sets the other 2" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="retrieval.stages.lw"):
        _lw(tmp_path, [0] * 4 + [1] * 4)  # span 6: every direction from data
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    with caplog.at_level("WARNING", logger="retrieval.stages.lw"):
        _lw(tmp_path, [0] * 4 + [1] * 4, max_pairs=3)  # 3 of the 12 pairs kept: at most 3 directions
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "gives 3 same-label pairs" in said[0] and "the other 3" in said[0]
    assert "lw.max_pairs (3) kept only these: raise it" in said[0]


def test_pair_span_counts_images_minus_the_groups_the_pairs_link():
    assert pair_span(np.array([[0, 1], [0, 2], [1, 2]])) == 2  # a label of 3: C(3, 2) pairs, 2 directions
    assert pair_span(np.array([[0, 1], [2, 3]])) == 2  # two groups
    assert pair_span(np.array([[0, 1], [1, 2], [2, 3], [5, 6]])) == 4  # a chain of 4 and a pair
    assert pair_span(np.zeros((0, 2), np.int64)) == 0
    rng = np.random.default_rng(0)  # the bound is the rank for random descriptors
    x = rng.normal(size=(8, 20))
    pairs = np.array([[0, 1], [1, 2], [0, 2], [4, 5], [6, 7], [5, 6]])
    assert np.linalg.matrix_rank(x[pairs[:, 0]] - x[pairs[:, 1]]) == pair_span(pairs) == 5


def _knn(labels, k):
    """Every image's k nearest others, by a similarity that favours its own label."""
    n = len(labels)
    s = np.where(labels[:, None] == labels[None, :], 0.9, 0.5) - 0.01 * np.abs(np.subtract.outer(range(n), range(n)))
    np.fill_diagonal(s, -np.inf)
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(s, ids, axis=1).astype(np.float32)


@pytest.mark.parametrize(
    "labels, why",
    [
        (np.full(12, -1), "no image is labelled (gnd.json 'labels': -1 for all)"),
        (np.arange(12), "no two of its 12 labelled images share a label"),
        (np.array([0, 0] + list(range(1, 11))), "1 label(s) are shared, but no image has"),
    ],
    ids=["unlabelled", "unique", "too-few-positives"],
)
def test_ames_refuses_a_split_without_a_training_anchor_naming_it_and_the_keys(labels, why):
    ids, sims = _knn(labels, 11)
    cfg = TrainConfig(num_candidates=10, min_pos=2, min_neg=2)
    with pytest.raises(ValueError) as e:
        check_training_anchors("res/lists.json", "mytrain", labels, ids, sims, cfg)
    assert str(e.value).startswith(f"res/lists.json: training split 'mytrain' gives AMES no training anchor: {why}")
    assert "ames.train.min_pos=2 same-label and ames.train.min_neg=2" in str(e.value)
    assert "ames.train.num_candidates=10 nearest" in str(e.value)


def test_ames_takes_a_split_with_anchors():
    labels = np.repeat(np.arange(4), 3)
    ids, sims = _knn(labels, 11)
    check_training_anchors("lists.json", "s", labels, ids, sims, TrainConfig(num_candidates=10, min_pos=2, min_neg=2))


def test_a_validation_split_without_positives_is_refused_before_training(tmp_path, caplog):
    """ames.validation_split whose queries have junk only: training scored it 0.0 every epoch and the evaluation
    chose the fusion point among ties of null (helper-140). The validator (built before the first epoch) and the
    evaluation's choice both read check_validation_positives."""
    write_neighbours(tmp_path / "knn.h5", np.zeros((2, 3), np.int32), np.ones((2, 3), np.float32), n_db=3,
                     search="exact", search_seconds=0.0)  # fmt: skip
    junk_only = [{"easy": [], "hard": [], "junk": [0]}, {"easy": [], "hard": [], "junk": [1, 2]}]
    write_json(tmp_path / "gnd.json", {"gnd": junk_only})
    with pytest.raises(ValueError) as e:
        make_validator(tmp_path / "q.h5", tmp_path / "db.h5", tmp_path / "knn.h5", tmp_path / "gnd.json",
                       tmp_path / "lists.json", 8, 8, 3, [0.5], [0.5], split="valnopos")  # fmt: skip
    assert str(e.value) == (
        f"{tmp_path / 'gnd.json'}: ames.validation_split 'valnopos': none of its 2 queries has a positive ('easy' or "
        "'hard'), so its mAP, which ames.validation_split chooses by, is undefined: give its queries positives, or "
        "choose another ames.validation_split"
    )
    caplog.clear()
    check_validation_positives([{"easy": [], "hard": [4], "junk": []}], "g", "ames.validation_split", "v")
    # accepted, with a warning: a choice made on one query's mAP (helper-140)
    assert "ames.validation_split 'v': only 1 of its queries has a positive" in caplog.text
    caplog.clear()
    check_validation_positives([{"easy": [i], "hard": [], "junk": []} for i in range(5)], "g", "k", "v")
    assert "only" not in caplog.text

"""Alpha query expansion and database augmentation on hand-worked examples."""

import numpy as np
import pytest

from retrieval.methods.qe import alpha_expand, expand


def test_alpha_qe_hand_example():
    q = np.array([[1.0, 0.0]], np.float32)
    db = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], np.float32)
    out = alpha_expand(q, db, k=2, alpha=3.0)
    # q (weight 1) + 1**3 * d0 + 0.6**3 * d1, normalised
    want = np.array([1 + 1 + 0.216 * 0.6, 0.216 * 0.8])
    np.testing.assert_allclose(out[0], want / np.linalg.norm(want), atol=1e-6)


def test_negative_similarities_are_clamped_and_k_zero_is_identity():
    q = np.array([[1.0, 0.0]], np.float32)
    db = np.array([[-0.6, 0.8], [-1.0, 0.0]], np.float32)  # both below zero similarity
    np.testing.assert_allclose(alpha_expand(q, db, k=2, alpha=1.0), q, atol=1e-7)
    np.testing.assert_allclose(alpha_expand(q * 3, db, k=0, alpha=3.0), q, atol=1e-7)


def test_database_augmentation_excludes_self_and_comes_before_expansion():
    db = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], np.float32)
    aug = alpha_expand(db, db, k=1, alpha=1.0, exclude_self=True)
    # row 0's nearest other row is row 1 (sim 0.8), not itself
    want0 = db[0] + 0.8 * db[1]
    np.testing.assert_allclose(aug[0], want0 / np.linalg.norm(want0), atol=1e-6)
    q = np.array([[0.0, 1.0]], np.float32)
    qn, dbn = expand(q, db, {"k": 1, "alpha": 1.0}, {"k": 1, "alpha": 1.0})
    np.testing.assert_allclose(dbn, aug, atol=1e-7)
    # the query expands with the augmented database
    j = int(np.argmax(aug @ q[0]))
    want = q[0] + max(float(aug[j] @ q[0]), 0.0) * aug[j]
    np.testing.assert_allclose(qn[0], want / np.linalg.norm(want), atol=1e-6)
    assert expand(q, db, None, None)[0] is q
    with pytest.raises(ValueError):
        alpha_expand(q, np.zeros((2, 3), np.float32), k=1, alpha=1.0)

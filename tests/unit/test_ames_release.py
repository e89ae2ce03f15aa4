"""AMES release files (flat, structured float16, structured packed bits) read into local-store rows."""

import h5py
import numpy as np
import pytest

from retrieval.ames_release import convert_rows, n_rows, read_rows


def _release(rng, n=3, k=6, d=16):
    desc = rng.normal(size=(n, k, d)).astype(np.float32)
    meta = np.zeros((n, k, 5), np.float32)
    meta[..., 0], meta[..., 1] = rng.random((n, k)), rng.random((n, k))
    meta[..., 4] = rng.random((n, k))
    counts = [6, 2, 0]
    for i, c in enumerate(counts):
        meta[i, c:, 3] = 1
        meta[i, c:, [0, 1, 4]] = 0
        desc[i, c:] = 0
    return meta, desc, counts


ENTRIES = [{"path": f"im{i}.jpg", "width": 200, "height": 100} for i in range(3)]


@pytest.mark.parametrize("layout", ["flat", "structured", "packed"])
def test_layouts_read_and_convert(tmp_path, layout):
    rng = np.random.default_rng(0)
    meta, desc, counts = _release(rng)
    path = tmp_path / "dinov2_gallery_local.hdf5"
    with h5py.File(path, "w") as f:
        if layout == "flat":
            f["features"] = np.concatenate([meta, desc], axis=2).astype(np.float16)
        else:
            packed = layout == "packed"
            dt = np.dtype([("metadata", np.float32, (6, 5)),
                           ("descriptor", np.uint8 if packed else np.float16, (6, 2 if packed else 16))])
            arr = np.zeros(3, dt)
            arr["metadata"] = meta
            arr["descriptor"] = np.packbits(desc >= 0, axis=-1) * (meta[..., 3:4] == 0) if packed else desc
            f["features"] = arr
    assert n_rows(path) == (3, 6, 16)
    m, x, packed = read_rows(path, 0, 3)
    assert packed == (layout == "packed")
    rows = convert_rows(path, m, x, ENTRIES, 4, "auto", 0, packed)
    assert [len(r["descriptors"]) for r in rows] == [4, 2, 0]  # valid only, capped at k
    assert (np.diff(rows[0]["weight"]) <= 0).all()
    top = np.argsort(-meta[0, :, 4], kind="stable")[:4]
    np.testing.assert_allclose(rows[0]["xy"], meta[0, top, :2] * [200, 100], rtol=1e-3)  # fractions -> pixels
    want = np.sign(desc[0, top]) if layout == "packed" else desc[0, top]
    want = want / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(rows[0]["descriptors"].astype(np.float32), want, atol=2e-3)
    assert tuple(rows[2]["image_size"]) == (200, 100)


def test_inverted_masks_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    meta, desc, _ = _release(rng)
    meta[..., 3] = 1 - meta[..., 3]  # the inverted convention a third party reported
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f["features"] = np.concatenate([meta, desc], axis=2)
    m, x, _ = read_rows(path, 0, 3)
    with pytest.raises(ValueError, match="mask column looks inverted"):
        convert_rows(path, m, x, ENTRIES, 6, "auto", 0)

"""AMES release files (flat, structured float16, structured packed bits) read into local-store rows."""

import json
import warnings

import h5py
import numpy as np
import pytest

from retrieval.data.datasets import build_image_lists
from retrieval.stores.ames_release import convert_rows, n_rows, read_nn, read_release_list, read_rows, write_nn


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
            dt = np.dtype(
                [
                    ("metadata", np.float32, (6, 5)),
                    ("descriptor", np.uint8 if packed else np.float16, (6, 2 if packed else 16)),
                ]
            )
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


def test_nn_file_round_trip_and_validation(tmp_path):
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(0)
    sims = -np.sort(-rng.random((3, 5)), axis=1).astype(np.float32)
    ids = np.stack([rng.permutation(7)[:5] for _ in range(3)])
    write_nn(tmp_path / "nn.pkl", ids, sims)
    with warnings.catch_warnings():  # reading our own export warned "Detected pickle protocol 4" (a trial)
        warnings.simplefilter("error")
        got_ids, got_sims = read_nn(tmp_path / "nn.pkl", 3, 7)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_allclose(got_sims, sims)
    # the released files store float64; ids as floats either way
    torch.save(torch.from_numpy(np.stack([sims, ids]).astype(np.float64)), tmp_path / "nn64.pkl")
    np.testing.assert_array_equal(read_nn(tmp_path / "nn64.pkl", 3, 7)[0], ids)

    def bad(arr, match, n_q=3, n_db=7):
        torch.save(torch.from_numpy(np.asarray(arr)), tmp_path / "bad.pkl")
        with pytest.raises(ValueError, match=match):
            read_nn(tmp_path / "bad.pkl", n_q, n_db)

    bad(np.stack([ids, sims]), "swapped")  # rows in the wrong order
    bad(np.stack([sims, ids]), "2 queries", n_q=2)  # another dataset's queries
    bad(np.stack([sims, ids]), r"outside the database \(0..4\)", n_db=5)
    dup = ids.copy()
    dup[1, 2] = dup[1, 0]
    bad(np.stack([sims, dup]), r"query rows \[1\] list a database image twice")
    bad(np.stack([sims[:, ::-1], ids]), "descending")
    bad(sims, r"expected \(2, Nq, K\)")
    (tmp_path / "evil.pkl").write_bytes(__import__("pickle").dumps({"a": object()}))
    with pytest.raises(ValueError, match="weights_only.*builtins.object is not allowed"):
        read_nn(tmp_path / "evil.pkl", 3, 7)
    # the export is a plain pickle, as AMES writes them and reads them (pickle.load; a torch.save zip it cannot)
    import pickle  # noqa: PLC0415

    with open(tmp_path / "nn.pkl", "rb") as fh:
        plain = pickle.load(fh)
    assert torch.is_tensor(plain) and tuple(plain.shape) == (2, 3, 5)
    np.testing.assert_array_equal(plain[1].numpy(), ids)
    (tmp_path / "os.pkl").write_bytes(pickle.dumps(__import__("os").getcwd))  # a callable global: refused
    with pytest.raises(ValueError, match="is not allowed"):
        read_nn(tmp_path / "os.pkl", 3, 7)
    # damaged files are named with their cause and the way out, not torch's advice to load with weights_only=False
    # (a new user's truncated nn_sift.pkl) nor torch's own exception (a text file: KeyError 101; garbage: MemoryError)
    (tmp_path / "cut.pkl").write_bytes((tmp_path / "nn.pkl").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut.pkl: truncated \(200 bytes; .*copy the release file again") as e:
        read_nn(tmp_path / "cut.pkl", 3, 7)
    assert "weights_only` set to `False`" not in str(e.value)
    for name, content in (("text.pkl", b"hello world\n" * 10), ("junk.pkl", b"\x80\x04\x95" + b"garbage" * 100)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}: not a torch tensor") as e:
            read_nn(tmp_path / name, 3, 7)
        assert "file an issue" not in str(e.value) and "()" not in str(e.value)  # an empty cause is named by type


def test_release_lists_give_sizes_without_the_images(tmp_path):
    """A release folder (ground truth + test_*.txt, no photos) builds image lists with the listed sizes."""

    root = tmp_path / "roxford5k"
    root.mkdir()
    gnd = {
        "imlist": ["a", "b"],
        "qimlist": ["q"],
        "gnd": [{"easy": [0], "hard": [], "junk": [1], "bbx": [1, 2, 30, 40]}],
    }
    (root / "gnd.json").write_text(json.dumps(gnd))
    (root / "test_gallery.txt").write_text("jpg/a.jpg,640,480\njpg/b.jpg,500,800\n")
    (root / "test_query.txt").write_text("jpg/q.jpg,1,2,1024,768\n")
    assert read_release_list(root / "test_query.txt") == [("jpg/q.jpg", 1024, 768)]
    lists, _ = build_image_lists(root, "roxford5k")
    assert [(e["width"], e["height"]) for e in lists["db"]] == [(640, 480), (500, 800)]
    assert lists["query"][0]["crop"] == [1, 2, 30, 40]
    (root / "test_gallery.txt").write_text("jpg/b.jpg,500,800\njpg/a.jpg,640,480\n")
    with pytest.raises(ValueError, match="order differs"):
        build_image_lists(root, "roxford5k")
    (root / "test_gallery.txt").unlink()  # without sizes, a missing photo is an error naming it
    with pytest.raises(FileNotFoundError, match=r"a\.jpg"):
        build_image_lists(root, "roxford5k")


def test_a_truncated_or_featureless_release_file_is_named(tmp_path):
    """h5py's "truncated file: eof = ..." named no file (a researcher's trial with a cut copy)."""
    rng = np.random.default_rng(2)
    meta, desc, _ = _release(rng, n=40, k=64, d=64)
    path = tmp_path / "sift_gallery_local.hdf5"
    with h5py.File(path, "w") as f:
        f["features"] = np.concatenate([meta, desc], axis=2)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for read in (lambda: n_rows(path), lambda: read_rows(path, 0, 3)):
        with pytest.raises(
            ValueError, match=r"sift_gallery_local\.hdf5: unreadable HDF5 .*copy the release file again"
        ) as e:
            read()
        # nothing chained tells the user to re-run a rule: none writes a release file (a new user's trial)
        assert e.value.__cause__ is None and e.value.__suppress_context__
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f["descriptors"] = np.zeros((2, 3))
    for read in (lambda: n_rows(tmp_path / "other.hdf5"), lambda: read_rows(tmp_path / "other.hdf5", 0, 1)):
        with pytest.raises(KeyError, match=r"other\.hdf5: no dataset 'features'"):
            read()


def test_an_exported_ground_truth_keeps_where_its_names_are_relative_to(tmp_path):
    """gnd.csv names images relative to the folder ('jpg/a.jpg', 'queries/q.jpg'): the exported pickle read them
    under jpg/ again ('jpg/jpg/a.jpg'; helper-99's trial). A revisitop-layout ground truth is exported as before."""
    import pickle  # noqa: PLC0415

    from retrieval.data.gnd import load_ground_truth  # noqa: PLC0415
    from retrieval.stages.export import release_ground_truth  # noqa: PLC0415

    entry = {"easy": [0], "hard": [], "junk": [1], "bbx": [1.0, 2.0, 30.0, 40.0]}
    csv_form = {"imlist": ["jpg/a.jpg", "jpg/b.jpg"], "qimlist": ["queries/q.jpg"], "gnd": [entry], "image_dir": ""}
    for given, image_dir in ((csv_form, ""), ({**csv_form, "imlist": ["a", "b"], "image_dir": "jpg"}, "jpg")):
        given = {k: v for k, v in given.items() if not (k == "image_dir" and v == "jpg")}  # gnd.json omits the default
        (tmp_path / "gnd_x.pkl").write_bytes(pickle.dumps(release_ground_truth(given), protocol=4))
        gt = load_ground_truth(tmp_path / "gnd_x.pkl")
        assert gt.image_dir == image_dir and gt.imlist == given["imlist"] and gt.qimlist == ["queries/q.jpg"]
        assert gt.gnd[0]["easy"] == [0] and gt.gnd[0]["junk"] == [1] and gt.gnd[0]["bbx"] == [1.0, 2.0, 30.0, 40.0]
    assert "image_dir" not in release_ground_truth({"imlist": [], "qimlist": [], "gnd": []})  # revisitop's own keys

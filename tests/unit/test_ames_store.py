"""The AMES database store (written by the ``ames_store`` stage, format in ``stores/ames.py``, payload in
``methods/ames/payload.py``): packed binary codes and float16 tokens give the same logits as projecting the
descriptors on the fly, its size is what it claims, and a store made for another model is refused; the logits file
reads back as written."""

import h5py
import numpy as np
import pytest

from retrieval.methods.ames.model import AMES, AmesConfig, save_checkpoint
from retrieval.methods.ames.payload import decode, encode, model_digest, payload_layout
from retrieval.methods.ames.rerank import compute_logits
from retrieval.runtime import read_json, write_json
from retrieval.stages.ames import ames_store_stage, logits_stage
from retrieval.stores.ames import DbStore, read_logits, write_db_store, write_logits
from retrieval.stores.global_store import write_neighbours
from retrieval.stores.local_store import open_local, write_local_chunk


def _local(tmp_path, n=7, k=12, d=16):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        m = [12, 3, 12, 9, 0, 12, 5][i]
        x = rng.normal(size=(m, d)).astype(np.float32)
        rows.append(
            {
                "descriptors": (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16),
                "xy": np.zeros((m, 2), np.float32),
                "scale": np.ones(m, np.float32),
                "weight": np.arange(m, 0, -1).astype(np.float32),
                "orientation": np.zeros(m, np.float32),
                "image_size": np.array([10, 10], np.int32),
            }
        )
    path = tmp_path / "db.h5"
    write_local_chunk(path, rows, k=k, dim=d, backbone="test", row_start=0, n_total=n)
    return path


@pytest.mark.parametrize("binarized", [False, True])
def test_store_gives_the_logits_of_on_the_fly_projection(tmp_path, binarized):
    import torch  # noqa: PLC0415

    torch.manual_seed(0)
    model = AMES(
        AmesConfig(local_dim=16, model_dim=32, nhead=2, num_layers=2, dim_feedforward=64, binarized=binarized)
    ).eval()
    if binarized:
        model.remap_local[0].W.data = torch.randn(16, 32)
    local = _local(tmp_path)
    store = tmp_path / "store.h5"
    save_checkpoint(str(tmp_path / "model.pt"), model, {})
    method = "ames_binary" if binarized else "ames"
    ames_store_stage(tmp_path / "model.pt", local, store, tmp_path / "m.json", 10, method, "cpu", "v", {}, "cpu")
    info = read_json(tmp_path / "m.json")["store"]
    assert read_json(tmp_path / "m.json")["inputs"]["db_local"] == {"path": str(local)}  # what it read, named
    with open_local(local) as f:
        dd, dc = f["descriptors"][:], f["count"][:]
    rng = np.random.default_rng(1)
    qd, qc = rng.normal(size=(2, 12, 16)).astype(np.float16), np.array([12, 6], np.int32)
    pairs = [np.array([0, 2, 4, 5]), np.array([1, 3, 6])]
    direct = compute_logits(model, qd, qc, lambda r: (dd[r], dc[r]), pairs, 10, 10, batch=3)
    payload = payload_layout(model)[0]
    assert info["payload"] == payload == ("codes" if binarized else "tokens")
    reader = DbStore(store, model_digest(model), payload)

    def read(rows):
        x, counts = reader.read(rows, 10)
        return decode(model, x), counts

    via_store = compute_logits(model, qd, qc, read, pairs, 10, 10, batch=3, prepared=True)
    for a, b in zip(direct, via_store):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with h5py.File(store, "r") as f:
        if binarized:
            assert f["codes"].dtype == np.uint8 and f["codes"].shape == (7, 10, 4)  # 32 bits -> 4 bytes
            assert info["bytes_per_image"] == 10 * 4 + 4
            assert not f["codes"][1, 3:].any()  # padding stays zero
        else:
            assert f["tokens"].dtype == np.float16 and info["bytes_per_image"] == 10 * 32 * 2 + 4
        np.testing.assert_array_equal(f["count"][:], np.minimum(dc, 10))
    reader.close()
    other = AMES(AmesConfig(local_dim=16, model_dim=32, nhead=2, num_layers=2, dim_feedforward=64, binarized=binarized))
    with pytest.raises(ValueError, match=r"store\.h5: prepared for another model"):
        DbStore(store, model_digest(other), payload)


def test_packed_bits_follow_the_sign_convention(tmp_path):
    import torch  # noqa: PLC0415

    model = AMES(
        AmesConfig(local_dim=16, model_dim=8, nhead=2, num_layers=1, dim_feedforward=16, binarized=True)
    ).eval()
    model.remap_local[0].W.data = torch.eye(16)[:, :8]  # the code is the sign of the first 8 coordinates
    local = _local(tmp_path)
    with open_local(local) as f:
        write_db_store(tmp_path / "s.h5", f, 12, lambda d: encode(model, d), payload="codes", width=1,
                       method="ames_binary", model_digest=model_digest(model))  # fmt: skip
        x = f["descriptors"][0, :12].astype(np.float32)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        bits = np.unpackbits(f["codes"][0], axis=-1)
    np.testing.assert_array_equal(bits, (x[:, :8] >= 0).astype(np.uint8))  # x >= 0 -> bit 1


@pytest.mark.parametrize("binarized, method", [(True, "ames"), (False, "ames_binary")])
def test_a_checkpoint_of_the_other_kind_is_refused_naming_the_key(tmp_path, binarized, method):
    """A binary model given as ames.checkpoint.ames was stored as packed codes and re-ranked under the name of the
    full-precision method; the store job now refuses it (and the reverse), before reading any descriptor."""
    model = AMES(AmesConfig(local_dim=16, model_dim=16, nhead=2, num_layers=1, dim_feedforward=32, binarized=binarized))
    save_checkpoint(str(tmp_path / "model.pt"), model, {})
    kind = "binary" if binarized else "full-precision"
    with pytest.raises(ValueError, match=rf"ames\.checkpoint\.{method}: .*model\.pt holds a {kind} AMES model"):
        ames_store_stage(
            tmp_path / "model.pt", tmp_path / "absent.h5", tmp_path / "store.h5", tmp_path / "m.json", 8, method,
            "cpu", "v", {}, "cpu",
        )  # fmt: skip
    assert not (tmp_path / "store.h5").exists()


def test_the_logits_file_reads_back_as_written_and_another_file_is_named(tmp_path):
    pairs = [np.array([3, 0, 7], np.int32), np.array([], np.int32), np.array([5], np.int32)]
    logits = [np.array([0.5, -1.0, 2.0], np.float32), np.array([], np.float32), np.array([np.float32(1e-3)])]
    write_logits(tmp_path / "l.h5", pairs, logits, q_desc=8, dtype="bfloat16")
    got_pairs, got_logits, attrs = read_logits(tmp_path / "l.h5")
    for a, b in zip(got_pairs + got_logits, pairs + logits):
        np.testing.assert_array_equal(a, b)
    assert attrs["n_pairs"] == 4 and attrs["n_queries"] == 3 and attrs["q_desc"] == 8 and attrs["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match=r"store\.h5: not an AMES logits file"):
        read_logits(_store_of_a_model(tmp_path))
    with pytest.raises(ValueError, match=r"l\.h5: not an AMES database store"):
        DbStore(tmp_path / "l.h5", "x", "tokens")


def _store_of_a_model(tmp_path):
    model = AMES(AmesConfig(local_dim=16, model_dim=16, nhead=2, num_layers=1, dim_feedforward=32)).eval()
    with open_local(_local(tmp_path)) as f:
        write_db_store(tmp_path / "store.h5", f, 4, lambda d: encode(model, d), payload="tokens", width=16,
                       method="ames", model_digest=model_digest(model))  # fmt: skip
    return tmp_path / "store.h5"


def test_the_logits_stage_refuses_a_model_that_gives_nan_and_writes_nothing(tmp_path):
    import torch  # noqa: PLC0415

    torch.manual_seed(0)
    model = AMES(AmesConfig(local_dim=16, model_dim=16, nhead=2, num_layers=1, dim_feedforward=32)).eval()
    local = _local(tmp_path)  # 7 images, used as queries and database
    ids = np.tile(np.arange(7), (7, 1))
    write_neighbours(tmp_path / "knn.h5", ids, np.ones((7, 7), np.float32), n_db=7)
    write_json(tmp_path / "gnd.json", None)
    args = (local, tmp_path / "store.h5", tmp_path / "knn.h5", tmp_path / "gnd.json", tmp_path / "logits.h5")
    save_checkpoint(str(tmp_path / "good.pt"), model, {})
    ames_store_stage(
        tmp_path / "good.pt", local, tmp_path / "store.h5", tmp_path / "m.json", 8, "ames", "cpu", "v", {}, "cpu"
    )
    logits_stage(tmp_path / "good.pt", *args, 8, 8, 5, "none", 4, "cpu", "v", "float32")
    pairs, logits, attrs = read_logits(tmp_path / "logits.h5")
    assert sum(map(len, pairs)) == 35 and all(np.isfinite(lg).all() for lg in logits)
    # the store's preparation, work once per database, reaches the evaluation's offline_seconds through the logits
    with DbStore(tmp_path / "store.h5", model_digest(model), "tokens") as store:
        assert store.seconds > 0 and attrs["store_seconds"] == store.seconds
    (tmp_path / "logits.h5").unlink()
    with torch.no_grad():  # a diverged training's weights: every logit NaN, and a NaN sorts anywhere in the fused score
        next(p for n, p in model.named_parameters() if "classifier" in n or n.endswith("weight")).fill_(float("nan"))
    save_checkpoint(str(tmp_path / "nan.pt"), model, {})
    ames_store_stage(
        tmp_path / "nan.pt", local, tmp_path / "store.h5", tmp_path / "m.json", 8, "ames", "cpu", "v", {}, "cpu"
    )
    with pytest.raises(ValueError, match=r"nan\.pt: the model gives \d+ non-finite logit\(s\) of 35 pairs"):
        logits_stage(tmp_path / "nan.pt", *args, 8, 8, 5, "none", 4, "cpu", "v", "float32")
    assert not (tmp_path / "logits.h5").exists()
    # a logits file with a NaN among the scored pairs is named when read
    write_logits(tmp_path / "bad.h5", [np.array([0, 1])], [np.array([0.5, np.nan], np.float32)])
    with pytest.raises(ValueError, match=r"bad\.h5: 1 non-finite logit\(s\) among the scored pairs"):
        read_logits(tmp_path / "bad.h5")


def test_non_finite_descriptors_are_named_in_their_file_not_blamed_on_the_model(tmp_path):
    model = AMES(AmesConfig(local_dim=16, model_dim=16, nhead=2, num_layers=1, dim_feedforward=32)).eval()
    save_checkpoint(str(tmp_path / "m.pt"), model, {})
    local = _local(tmp_path)
    with h5py.File(local, "r+") as f:
        f["descriptors"][2, 1, 3] = np.nan
    with pytest.raises(ValueError, match=r"db\.h5: non-finite local descriptors in database row\(s\) \[2\]"):
        ames_store_stage(
            tmp_path / "m.pt", local, tmp_path / "s.h5", tmp_path / "m.json", 8, "ames", "cpu", "v", {}, "cpu"
        )
    assert not (tmp_path / "s.h5").exists()
    clean = tmp_path / "clean"
    clean.mkdir()
    good = _local(clean)
    ames_store_stage(tmp_path / "m.pt", good, tmp_path / "s.h5", tmp_path / "m.json", 8, "ames", "cpu", "v", {}, "cpu")
    write_neighbours(tmp_path / "knn.h5", np.tile(np.arange(7), (7, 1)), np.ones((7, 7), np.float32), n_db=7)
    write_json(tmp_path / "gnd.json", None)
    with pytest.raises(ValueError, match=r"db\.h5: non-finite local descriptors in query row\(s\) \[2\]"):
        logits_stage(
            tmp_path / "m.pt", local, tmp_path / "s.h5", tmp_path / "knn.h5", tmp_path / "gnd.json",
            tmp_path / "l.h5", 8, 8, 5, "none", 4, "cpu", "v", "float32",
        )  # fmt: skip

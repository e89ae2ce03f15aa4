"""GLDv2 download against a local HTTP server in the official layout: resumable parts, MD5 verification, the
parts subset whose ground truth is restricted to the images present, and the offline message."""

import hashlib
import io
import tarfile
import time

import numpy as np
import pytest
from PIL import Image
from test_download import _Handler, server  # noqa: F401 - the local HTTP server fixture

from retrieval.data import download_gldv2 as mod
from retrieval.data.datasets import build_image_lists
from retrieval.data.download import OfflineError
from retrieval.data.download_gldv2 import download_gldv2

INDEX = ["0a1b2c3d4e5f6071", "1b2c3d4e5f607182", "2c3d4e5f60718293"]
TEST = ["9a8b7c6d5e4f3021", "a1b2c3d4e5f60718"]


def _jpeg(seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _tar(ids, seed=0):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for k, i in enumerate(ids):
            data = _jpeg(seed + k)
            info = tarfile.TarInfo(f"{i[0]}/{i[1]}/{i[2]}/{i}.jpg")  # the official parts hold a/b/c/{id}.jpg
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _host(n_index_parts=2):
    """The official layout: metadata/, ground_truth/, {split}/images_NNN.tar, md5sum/{split}/md5.images_NNN.txt."""
    files = {
        "/metadata/index.csv": ("id\n" + "".join(f"{i}\n" for i in INDEX)).encode(),
        "/metadata/test.csv": ("id\n" + "".join(f"{i}\n" for i in TEST)).encode(),
        "/ground_truth/retrieval_solution_v2.1.csv": (
            f"id,images,Usage\n{TEST[0]},{INDEX[0]} {INDEX[2]},Public\n{TEST[1]},{INDEX[1]},Private\n"
        ).encode(),
    }
    parts = {"index": [INDEX[:2], INDEX[2:]][:n_index_parts], "test": [TEST]}
    for split, chunks in parts.items():
        for n, ids in enumerate(chunks):
            body = _tar(ids, seed=10 * n)
            files[f"/{split}/images_{n:03d}.tar"] = body
            files[f"/md5sum/{split}/md5.images_{n:03d}.txt"] = (
                f"{hashlib.md5(body).hexdigest()}  images_{n:03d}.tar\n".encode()
            )
    return files


@pytest.fixture()
def two_part_sources(monkeypatch):

    monkeypatch.setitem(mod.GLDV2_PARTS, "gldv2", {**mod.GLDV2_PARTS["gldv2"], "splits": {"index": 2, "test": 1}})


def test_download_resumes_verifies_and_reads_as_a_dataset(tmp_path, server, two_part_sources):  # noqa: F811
    _Handler.files = _host()
    _Handler.cut_first = {"/index/images_001.tar"}
    with pytest.raises(Exception):
        download_gldv2("gldv2", tmp_path, base=server)  # dies inside the second index part
    assert (tmp_path / "gldv2/_download/index_images_000.tar.done").is_file()
    assert not (tmp_path / "gldv2/.download_complete").exists()
    del _Handler.files["/index/images_000.tar"]  # a finished part is never fetched again
    summary = download_gldv2("gldv2", tmp_path, base=server)
    assert summary["subset"] is False and summary["parts"] == {"index": 2, "test": 1}
    assert (tmp_path / "gldv2/index/2/c/3/2c3d4e5f60718293.jpg").is_file()
    assert not list((tmp_path / "gldv2/_download").glob("*.tar"))  # keep_archives false: extracted parts deleted
    lists, gt = build_image_lists(tmp_path / "gldv2", "gldv2")
    assert len(lists["db"]) == 3 and gt.gnd[0]["easy"] == [0, 2] and gt.protocol == "gldv2"


def test_md5_mismatch_is_refused_and_the_part_deleted(tmp_path, server, two_part_sources):  # noqa: F811
    _Handler.files = _host()
    _Handler.cut_first = set()
    _Handler.files["/md5sum/index/md5.images_000.txt"] = b"0123456789abcdef0123456789abcdef  images_000.tar\n"
    with pytest.raises(ValueError, match=r"index/images_000\.tar: MD5 .* official checksum is 0123456789abcdef"):
        download_gldv2("gldv2", tmp_path, base=server)
    assert not (tmp_path / "gldv2/_download/index_images_000.tar").exists()
    assert not (tmp_path / "gldv2/index").exists()  # nothing extracted from a bad part


def test_parts_subset_says_so_and_restricts_the_ground_truth(tmp_path, server, two_part_sources):  # noqa: F811
    _Handler.files = _host()
    _Handler.cut_first = set()
    summary = download_gldv2("gldv2", tmp_path, parts=1, base=server)
    assert summary["subset"] is True and summary["parts"] == {"index": 1, "test": 1}
    with pytest.raises(FileNotFoundError, match="2c3d4e5f60718293"):
        build_image_lists(tmp_path / "gldv2", "gldv2")  # the full ground truth names an image not downloaded
    lists, gt = build_image_lists(tmp_path / "gldv2", "gldv2", gldv2={"present_only": True})
    assert len(gt.imlist) == 2 and gt.gnd[0]["easy"] == [0] and gt.gnd[1]["easy"] == [1]
    assert lists["subset"]["index_images_official"] == 3 and lists["subset"]["index_images"] == 2


def test_offline_fails_at_once_naming_where_to_put_the_files(tmp_path):
    t0 = time.time()
    with pytest.raises(OfflineError) as e:
        download_gldv2("gldv2-train", tmp_path, base="http://127.0.0.1:9")  # nothing listens on port 9
    assert time.time() - t0 < 30
    msg = str(e.value)
    assert str(tmp_path / "gldv2-train" / "train_clean.csv") in msg and str(tmp_path / "gldv2-train" / "train") in msg
    assert "images_499.tar" in msg and "present_only" in msg


def test_a_dataset_read_here_before_is_told_as_moved_before_it_is_downloaded_again(tmp_path, caplog):
    """Moving a downloaded dataset's folder planned its download again, with no word of the copy the lists were
    made from (about 500 GB for GLDv2); offline, the message said only where to put the files."""
    with pytest.raises(OfflineError) as e:
        download_gldv2("gldv2", tmp_path, base="http://127.0.0.1:9", read_before="results/lists/gldv2/")
    note = f"gldv2 was read here before (results/lists/gldv2/), but {tmp_path / 'gldv2'} holds no complete download"
    assert note in str(e.value) and "dataset_dirs.gldv2" in str(e.value)
    assert str(e.value).index(note) < str(e.value).index("present_only")  # then where to put the files
    assert any(note in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    caplog.clear()
    with pytest.raises(OfflineError) as e:
        download_gldv2("gldv2", tmp_path, base="http://127.0.0.1:9")
    assert "read here before" not in str(e.value) and not caplog.records

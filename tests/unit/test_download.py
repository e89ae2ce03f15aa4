"""Download of revisitop datasets: resumable fetch, flat extraction, verification, and the offline message.

A local HTTP server (127.0.0.1) with range support stands in for the official hosts.
"""

import http.server
import io
import pickle
import tarfile
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from retrieval.data.datasets import build_image_lists
from retrieval.data.download import SOURCES, OfflineError, download_revisitop, extract_tree, fetch, verify_dataset


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_first: set[str] = set()  # paths whose first GET dies half-way

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.cut_first:
            self.cut_first.discard(self.path)
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body[start:])


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _jpeg(seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_fetch_resumes_an_interrupted_download(tmp_path, server):
    payload = bytes(range(256)) * 4000
    _Handler.files = {"/big.bin": payload}
    _Handler.cut_first = {"/big.bin"}
    dest = tmp_path / "big.bin"
    with pytest.raises(Exception):
        fetch(f"{server}/big.bin", dest, block=4096)
    part = tmp_path / "big.bin.part"
    assert not dest.exists() and 0 < part.stat().st_size < len(payload)
    fetch(f"{server}/big.bin", dest)
    assert dest.read_bytes() == payload and not part.exists()


def test_download_extracts_flat_and_verifies_against_ground_truth(tmp_path, server):
    names, qnames = ["all_souls_000001", "ashmolean_000002", "balliol_000003"], ["radcliffe_000004"]
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tar:
        for i, n in enumerate(names + qnames):
            data = _jpeg(i)
            info = tarfile.TarInfo(f"oxbuild/sub/{n}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        corrupt = tarfile.TarInfo("oxbuild/unlisted_corrupt.jpg")  # like the corrupt Paris files: ignored
        corrupt.size = 5
        tar.addfile(corrupt, io.BytesIO(b"xxxxx"))
    gnd = {
        "imlist": names,
        "qimlist": qnames,
        "gnd": [
            {"easy": np.array([0]), "hard": np.array([1]), "junk": np.array([2]), "bbx": np.array([1.0, 1, 10, 10])}
        ],
    }
    _Handler.files = {"/imgs.tgz": tar_buf.getvalue(), "/gnd_toy.pkl": pickle.dumps(gnd)}
    _Handler.cut_first = {"/imgs.tgz"}
    sources = {"toy": {"archives": [f"{server}/imgs.tgz"], "gnd": f"{server}/gnd_toy.pkl", "n_db": 3, "n_queries": 1}}
    with pytest.raises(Exception):
        download_revisitop("toy", tmp_path, sources)  # interrupted once
    assert not (tmp_path / "toy" / ".download_complete").exists()
    summary = download_revisitop("toy", tmp_path, sources)  # resumes
    assert summary["db"] == 3 and summary["queries"] == 1
    assert sorted(p.name for p in (tmp_path / "toy" / "jpg").iterdir())[:4] == sorted(
        f"{n}.jpg" for n in names + qnames
    )
    assert (tmp_path / "toy" / ".download_complete").is_file()
    # a listed image that cannot be decoded fails verification, naming it
    (tmp_path / "toy" / "jpg" / "balliol_000003.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "toy" / "_download" / "imgs.tgz").unlink()
    _Handler.files["/imgs.tgz"] = tar_buf.getvalue()

    with pytest.raises(ValueError, match="balliol_000003"):
        verify_dataset(tmp_path / "toy", "toy", 3, 1)


def _online():
    try:
        urllib.request.urlopen(urllib.request.Request(SOURCES["roxford5k"]["gnd"], method="HEAD"), timeout=5).close()
        return True
    except OSError:
        return False


def test_offline_fails_at_once_saying_where_to_put_the_files(tmp_path):
    if _online():
        pytest.skip("online: this test checks the offline message")
    t0 = time.time()
    with pytest.raises(OfflineError) as e:
        download_revisitop("roxford5k", tmp_path)
    assert time.time() - t0 < 30
    msg = str(e.value)
    assert str(tmp_path / "roxford5k" / "jpg") in msg and "gnd_roxford5k.pkl" in msg and "oxbuild_images" in msg
    # no chained URLError traceback above it (it buried this message in about 60 lines of the job's output)
    assert e.value.__cause__ is None and e.value.__suppress_context__
    # the data placed under the alias's name (a new user's trial): the message says which folder is read
    (tmp_path / "roxford" / "jpg").mkdir(parents=True)
    with pytest.raises(OfflineError, match=r"roxford exists, but roxford5k's data is read from .*roxford5k/.*move"):
        download_revisitop("roxford5k", tmp_path)


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_distractor_download_keeps_folders_resumes_per_archive_and_verifies_the_list(tmp_path, server):
    names = [f"{i % 2:02d}/{i:06d}.jpg" for i in range(6)]
    _Handler.files = {
        "/revisitop1m.txt": ("\n".join(names) + "\n").encode(),
        "/r1m.1.tar.gz": _tar([(n, _jpeg(i)) for i, n in enumerate(names[:3])]),
        "/r1m.2.tar.gz": _tar([(n, _jpeg(i + 3)) for i, n in enumerate(names[3:], 0)]),
    }
    _Handler.cut_first = {"/r1m.2.tar.gz"}
    sources = {
        "revisitop1m": {
            "archives": [f"{server}/r1m.1.tar.gz", f"{server}/r1m.2.tar.gz"],
            "list": f"{server}/revisitop1m.txt",
            "n_db": 6,
            "n_queries": 0,
        }
    }
    with pytest.raises(Exception):
        download_revisitop("revisitop1m", tmp_path, sources, keep_archives=False)  # dies in the second archive
    cache = tmp_path / "revisitop1m" / "_download"
    assert (cache / "r1m.1.tar.gz.done").is_file() and not (cache / "r1m.1.tar.gz").exists()  # extracted, deleted
    del _Handler.files["/r1m.1.tar.gz"]  # a done archive is never fetched again
    summary = download_revisitop("revisitop1m", tmp_path, sources, keep_archives=False)
    assert summary["db"] == 6 and summary["queries"] == 0
    assert sorted(
        str(p.relative_to(tmp_path / "revisitop1m" / "jpg")) for p in (tmp_path / "revisitop1m" / "jpg").rglob("*.jpg")
    ) == sorted(names)

    lists, gt = build_image_lists(tmp_path / "revisitop1m", "revisitop1m")
    assert gt is None and [e["name"] for e in lists["db"]] == names and lists["query"] == []
    # a listed image lost after extraction fails verification, naming it and the done markers
    (tmp_path / "revisitop1m" / "jpg" / names[4]).unlink()
    (tmp_path / "revisitop1m" / ".download_complete").unlink()
    with pytest.raises(ValueError, match=r"000004\.jpg.*\.done"):
        download_revisitop("revisitop1m", tmp_path, sources)


def test_archive_members_cannot_escape_the_image_folder(tmp_path):

    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar([("ok/a.jpg", _jpeg(0)), ("../../outside.jpg", _jpeg(1))]))
    with pytest.raises(ValueError, match="outside"):
        extract_tree(archive, tmp_path / "ds" / "jpg")
    assert not (tmp_path / "outside.jpg").exists()


def test_offline_distractor_message_names_the_list_and_archives(tmp_path):
    if _online():
        pytest.skip("online: this test checks the offline message")
    with pytest.raises(OfflineError) as e:
        download_revisitop("revisitop1m", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "revisitop1m" / "revisitop1m.txt") in msg and "revisitop1m.100.tar.gz" in msg
    assert "100 archives" in msg and len(SOURCES["revisitop1m"]["archives"]) == 100


def test_verification_names_images_whose_exif_orientation_is_not_1(tmp_path, caplog):
    """They are now indexed rotated (as displayed), which changes what is indexed: the verification says which."""

    root = tmp_path / "toy"
    (root / "jpg").mkdir(parents=True)
    names = ["a", "b", "c"]
    for i, n in enumerate(names):
        exif = Image.Exif()
        if n == "b":
            exif[0x0112] = 6
        Image.fromarray(np.full((16, 24, 3), 40 * i, np.uint8)).save(root / "jpg" / f"{n}.jpg", exif=exif)
    gnd = {
        "imlist": names[:2],
        "qimlist": names[2:],
        "gnd": [
            {
                "easy": np.array([0]),
                "hard": np.array([], np.int64),
                "junk": np.array([], np.int64),
                "bbx": np.array([0.0, 0, 5, 5]),
            }
        ],
    }
    (root / "gnd_toy.pkl").write_bytes(pickle.dumps(gnd))
    with caplog.at_level("WARNING"):
        counts = verify_dataset(root, "toy", 2, 1)
    assert counts["exif_orientation_not_1"] == ["b (orientation 6)"]
    assert "b (orientation 6)" in caplog.text


def test_a_revisitop_dataset_read_here_before_is_told_as_moved(tmp_path, caplog):
    """The same for ROxford5k: its lists exist (results/lists/roxford5k/), its folder does not."""
    unreachable = {"roxford5k": {**SOURCES["roxford5k"], "gnd": "http://127.0.0.1:9/gnd_roxford5k.pkl"}}
    with pytest.raises(OfflineError) as e:
        download_revisitop("roxford5k", tmp_path, sources=unreachable, read_before="results/lists/roxford5k/")
    assert "roxford5k was read here before (results/lists/roxford5k/)" in str(e.value)
    assert "name its folder in dataset_dirs.roxford5k" in str(e.value) and "gnd_roxford5k.pkl" in str(e.value)
    assert any("downloading it again" in r.getMessage() for r in caplog.records)

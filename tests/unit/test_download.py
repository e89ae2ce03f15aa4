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

from retrieval.download import SOURCES, OfflineError, download_revisitop, fetch


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
            self.wfile.write(body[start:start + (len(body) - start) // 2])
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
    gnd = {"imlist": names, "qimlist": qnames,
           "gnd": [{"easy": np.array([0]), "hard": np.array([1]), "junk": np.array([2]), "bbx": np.array([1.0, 1, 10, 10])}]}
    _Handler.files = {"/imgs.tgz": tar_buf.getvalue(), "/gnd_toy.pkl": pickle.dumps(gnd)}
    _Handler.cut_first = {"/imgs.tgz"}
    sources = {"toy": {"archives": [f"{server}/imgs.tgz"], "gnd": f"{server}/gnd_toy.pkl", "n_db": 3, "n_queries": 1}}
    with pytest.raises(Exception):
        download_revisitop("toy", tmp_path, sources)  # interrupted once
    assert not (tmp_path / "toy" / ".download_complete").exists()
    summary = download_revisitop("toy", tmp_path, sources)  # resumes
    assert summary["db"] == 3 and summary["queries"] == 1
    assert sorted(p.name for p in (tmp_path / "toy" / "jpg").iterdir())[:4] == sorted(f"{n}.jpg" for n in names + qnames)
    assert (tmp_path / "toy" / ".download_complete").is_file()
    # a listed image that cannot be decoded fails verification, naming it
    (tmp_path / "toy" / "jpg" / "balliol_000003.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "toy" / "_download" / "imgs.tgz").unlink()
    _Handler.files["/imgs.tgz"] = tar_buf.getvalue()
    from retrieval.download import verify_dataset

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

"""Atomic writes: nothing under the final name until complete, and leftovers of a killed attempt removed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from retrieval.runtime import (
    Manifest,
    Progress,
    _runs_snakemake,
    atomic_path,
    check_recorded,
    open_h5,
    resolve_device,
    write_json,
)


def test_atomic_write_removes_a_killed_attempts_leftover(tmp_path):
    out = tmp_path / "x.json"
    stale = tmp_path / ".x.json.abc123.part"
    stale.write_text("half")
    other = tmp_path / ".y.json.abc123.part"  # another file's temporary: not ours to remove
    other.write_text("half")
    write_json(out, {"a": 1})
    assert out.read_text().strip().startswith("{") and not stale.exists() and other.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_get_the_mode_a_plain_open_would(tmp_path, umask):
    """Results on a shared disk: mkstemp's 0600 must not reach the final file, whether the writer reopens the
    temporary (json, h5py, numpy) or not; the umask is honoured and restored."""
    old = os.umask(umask)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
        with atomic_path(tmp_path / "r.h5") as tmp:
            with h5py.File(tmp, "w") as f:
                f["x"] = [1, 2]
        (tmp_path / "plain").write_text("x")
        assert os.umask(umask) == umask
    finally:
        os.umask(old)
    want = (tmp_path / "plain").stat().st_mode & 0o777
    assert want == 0o666 & ~umask
    for name in ("r.json", "r.h5"):
        assert (tmp_path / name).stat().st_mode & 0o777 == want, name


def test_failed_block_leaves_neither_the_file_nor_a_temporary(tmp_path):
    out = tmp_path / "r.h5"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_progress_logs_every_tenth_and_the_end_once_each():

    class Rec:
        def __init__(self):
            self.lines = []

        def info(self, fmt, *args):
            self.lines.append(fmt % args)

    rec = Rec()
    p = Progress(rec, "logits", 95, "pairs", min_interval=0)
    for done in range(1, 96):
        p.update(done)
    assert len(rec.lines) == 11 and rec.lines[-1].startswith("logits: 95/95 pairs (100%)")
    assert rec.lines[0].startswith("logits: 9/95")
    # a loop faster than min_interval (the default 1 s) writes its end alone (ten lines in 6 ms, a new user's trial)
    fast = Rec()
    p = Progress(fast, "spatial verification", 20, "database images")
    for done in range(1, 21):
        p.update(done)
    assert [line.split(" (")[0] for line in fast.lines] == ["spatial verification: 20/20 database images"]


def test_manifest_records_the_hardware_results_depend_on(tmp_path):

    m = Manifest("x", "v1", {"a": 1}, "tiny")
    m.write(tmp_path / "manifest.json")
    hw = json.loads((tmp_path / "manifest.json").read_text())["hardware"]
    assert hw["cpu_count"] >= 1 and set(hw["cpu_flags"]) <= {
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "avx512_fp16",
        "avx512_vnni",
        "amx_bf16",
    }
    # numpy's OpenBLAS is loaded with the package: its kernels are named (the demo's drift across Xeons came from
    # faiss's OpenBLAS choosing other kernels on another CPU model)
    assert any(b["prefix"] and "openblas" in b["prefix"] and b["architecture"] for b in hw["blas"]), hw["blas"]
    # recording it imports nothing heavy: a job that never loaded torch does not pay for it
    code = "import sys; from retrieval.runtime import hardware; h = hardware(); print('torch' in sys.modules, h.get('torch_threads'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).parents[2] / "workflow_scripts"),
    ).stdout
    assert out.split() == ["False", "None"]
    # a forced kernel choice is recorded, and the libraries report the kernels it forced
    code = (
        "import faiss, json; from retrieval.runtime import hardware; h = hardware(); "
        "print(json.dumps([h.get('openblas_coretype'), sorted(b['architecture'] for b in h['blas'])]))"
    )
    forced = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OPENBLAS_CORETYPE": "HASWELL"},
        cwd=str(Path(__file__).parents[2] / "workflow_scripts"),
    ).stdout
    assert json.loads(forced) == ["HASWELL", ["Haswell", "Haswell"]]


SIFT_FAULTS = """
import resource, sys
import cv2, numpy as np
from retrieval.runtime import keep_freed_memory
from retrieval.features import sift
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
cv2.setNumThreads(1)
cfg = sift.SiftConfig(k=1000, max_side=1024, contrast_threshold=0.02, edge_threshold=10.0)
img = cv2.GaussianBlur((np.random.default_rng(0).random((360, 480)) * 255).astype(np.uint8), (0, 0), 2)
sift.extract_sift(img, cfg)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    sift.extract_sift(img, cfg)
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_sift_from_faulting_on_every_image():
    """SIFT's per-image pyramids are freed and allocated again for every image; once keep_freed_memory has set
    glibc's thresholds they are reused (measured: 138 page faults per 480 x 360 image by default, 3 with it)."""
    workdir = Path(__file__).resolve().parents[2] / "workflow_scripts"

    def faults(mode):
        out = subprocess.run(
            [sys.executable, "-c", SIFT_FAULTS, mode], cwd=workdir, capture_output=True, text=True, check=True
        )
        kept, per_image = out.stdout.split()
        return kept, float(per_image)

    kept, per_image = faults("keep")
    assert kept == "True"
    assert per_image < 20


ONEDNN_SHAPES = """
import sys, torch
from retrieval.runtime import limit_threads
limit_threads(1)  # after torch's import, as in the entry points that import torch through the library
w = torch.randn(64, 32, dtype=torch.bfloat16)
for _ in range(2):  # 1100 shapes, more than oneDNN's default 1024 kernels, twice
    for m in range(1, 1101):
        torch.nn.functional.linear(torch.ones(m, 32, dtype=torch.bfloat16), w)
"""


def test_limit_threads_keeps_every_shapes_onednn_kernel():
    """AMES training's matrix products take about 1,900 shapes; with oneDNN's default cache of 1024 kernels they
    were compiled again and again (2.5-3 ms each). limit_threads raises the cache (unless the environment sets
    it): 1100 shapes run twice compile 1100 kernels, not 2200."""
    workdir = Path(__file__).resolve().parents[2] / "workflow_scripts"

    def misses(**env):
        names = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")
        base = {k: v for k, v in os.environ.items() if k not in names}
        out = subprocess.run(
            [sys.executable, "-c", ONEDNN_SHAPES],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
            env={**base, "ONEDNN_VERBOSE": "2", **env},
        )
        return sum("create:cache_miss" in line and ",matmul," in line for line in out.stdout.splitlines())

    kept = misses()
    if kept == 0:
        pytest.skip("torch runs bfloat16 matrix products without oneDNN on this CPU")
    assert 1000 < kept < 1200  # (a few of the smallest shapes take another path)
    assert misses(ONEDNN_PRIMITIVE_CACHE_CAPACITY="1024") > 2000  # a value the environment sets is kept


def _failing_job(log: Path, statement: str) -> subprocess.CompletedProcess:
    """A job's entry point in a fresh process: setup_logging(log), then ``statement``, which raises."""
    code = f"from retrieval.runtime import setup_logging; setup_logging({str(log)!r}); {statement}"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2] / "workflow_scripts",
        capture_output=True,
        text=True,
    )


def test_an_exception_that_ends_a_job_is_written_to_its_log_file(tmp_path):
    """A job that failed before logging anything left an empty log, the file Snakemake's message points at (a new
    user's trial: a TypeError deep in evaluate_sv); the traceback now goes to the log as well as to stderr."""
    log = tmp_path / "logs" / "job.log"
    out = _failing_job(log, "int('five')")
    assert out.returncode == 1
    text = log.read_text()
    assert "the job failed:" in text and "Traceback" in text
    assert "ValueError: invalid literal for int() with base 10: 'five'" in text
    # a ValueError or OSError (what the project raises for input it refuses) is said on stderr in its own words, with
    # where its traceback is (a user's trial read ten lines of traceback above "FileNotFoundError: ... not found" as
    # a crash)
    assert out.stderr == f"ValueError: invalid literal for int() with base 10: 'five'\n(its traceback is in {log})\n"
    # any other exception is a bug: stderr keeps Python's own traceback, once
    out = _failing_job(log, "len(5)")
    assert out.returncode == 1 and out.stderr.count("Traceback") == 1 and "TypeError" in out.stderr
    assert "Traceback" in log.read_text()


def test_only_snakemake_processes_count_as_the_run_a_fault_kills():
    """RETRIEVAL_FAULT=<step>:run kills the Snakemake ancestors of the job: a command line that merely mentions the
    word (``pytest -k killed_snakemake``) killed pytest with its test."""
    assert _runs_snakemake(["/x/.venv/bin/snakemake", "--cores", "2"])
    assert _runs_snakemake(["/usr/bin/python3", "/x/.venv/bin/snakemake", "results/demo_global.json"])
    assert _runs_snakemake(["/usr/bin/python3", "-m", "snakemake", "--snakefile", "Snakefile"])
    assert not _runs_snakemake(["/x/.venv/bin/pytest", "-k", "killed_snakemake", "tests"])
    assert not _runs_snakemake(["/usr/bin/python3", "/w/.snakemake/scripts/tmp1.evaluate_global.py"])
    assert not _runs_snakemake(["/bin/sh", "-c", "cd /snakemake-work && python run.py"])


def test_a_missing_cuda_device_is_refused_naming_its_key():
    """``benchmark.ames.device: cuda`` on a machine without a GPU was reported as ``ames.device``."""
    import torch  # noqa: PLC0415

    assert resolve_device("cpu", "benchmark.ames.device") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: cuda is a valid device here")
    with pytest.raises(RuntimeError, match=r"^benchmark\.ames\.device: 'cuda:1', but this torch .* sees no CUDA GPU"):
        resolve_device("cuda:1", "benchmark.ames.device")


def test_open_h5_names_a_truncated_file_and_how_to_make_it_again(tmp_path):
    """h5py's message for a truncated file names no file ("Unable to synchronously open file (truncated file: eof =
    1000 ...)"): a new user's truncated knn.h5 failed evaluate_global that way."""
    path = tmp_path / "knn.h5"
    with h5py.File(path, "w") as f:
        f["ids"] = np.arange(100000)
    with open_h5(path) as f:
        assert f["ids"].shape == (100000,)
    with open(path, "r+b") as fh:
        fh.truncate(1000)
    # the remedy that works: -R with the path (a plain run after deleting it found nothing to do, helper-119)
    with pytest.raises(ValueError, match=rf"knn\.h5: unreadable HDF5 file \(truncated.*add -R {path} after your"):
        open_h5(path)
    with pytest.raises(FileNotFoundError, match="gone.h5"):
        open_h5(tmp_path / "gone.h5")


def test_read_json_names_the_file_for_invalid_json_and_for_text_that_is_not_utf8(tmp_path):
    from retrieval.runtime import read_json  # noqa: PLC0415

    (tmp_path / "a.json").write_text('{"k": 1,}')
    with pytest.raises(ValueError, match=r"a\.json: not valid JSON"):
        read_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_bytes('{"k": "caf\u00e9"}'.encode("latin-1"))  # a bare UnicodeDecodeError before
    with pytest.raises(ValueError, match=r"b\.json: not UTF-8 text"):
        read_json(tmp_path / "b.json")
    (tmp_path / "c.json").write_text('{"k": "café"}', encoding="utf-8")
    assert read_json(tmp_path / "c.json") == {"k": "café"}


def test_a_rules_manifest_times_the_job_and_records_its_threads(tmp_path):
    """A new user's trial: evaluate_sv's manifest said 0.06 s for a 27 s job (the manifest, made after the work, timed
    only its own writing), and no manifest said how many threads the numbers were computed on. In a fresh process,
    as an entry point: limit_threads, the work (a 1.5 s sleep), then the manifest."""
    code = f"""
import time
from types import SimpleNamespace
from snakemake.iocontainers import InputFiles, OutputFiles, Params, Wildcards
from retrieval.runtime import limit_threads, write_rule_manifest
limit_threads(1)
time.sleep(1.5)
open({str(tmp_path / "out.txt")!r}, "w").write("x")
smk = SimpleNamespace(
    params=Params(fromdict={{"preset": "cpu", "k": 3}}),
    input=InputFiles(fromdict={{}}),
    output=OutputFiles(fromdict={{"out": {str(tmp_path / "out.txt")!r}, "manifest": {str(tmp_path / "m.json")!r}}}),
    wildcards=Wildcards(fromdict={{"ver": "0123abcd"}}),
)
write_rule_manifest(smk, "evaluate")
smk.params = Params(fromdict={{"check": None}})  # an import rule: no preset param; the configuration's
smk.config = {{"preset": "tiny"}}
smk.output = OutputFiles(fromdict={{"out": {str(tmp_path / "out.txt")!r}, "manifest": {str(tmp_path / "i.json")!r}}})
write_rule_manifest(smk, "import_global")
"""
    root = Path(__file__).parents[2] / "workflow_scripts"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(root), env={**os.environ, "PYTHONPATH": str(root)})
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["timing"]["seconds"] >= 1.5 and m["threads"] == 1 and m["version"] == "0123abcd"
    assert list(m["outputs"]) == [str(tmp_path / "out.txt")] and m["preset"] == "cpu"
    assert json.loads((tmp_path / "i.json").read_text())["preset"] == "tiny"  # it said null (helper-99's trial)
    made = Manifest("x", "v1", {})  # made before the work, as the stages do: timed from its creation
    made.write(tmp_path / "n.json")
    assert json.loads((tmp_path / "n.json").read_text())["timing"]["seconds"] < 1.0


def test_every_torch_file_loader_names_the_cause_without_torchs_advice(tmp_path):
    """A model or tensor file that torch cannot load, whoever loads it (a deep backbone's checkpoint here; AMES's
    checkpoints and nn files in their tests): a copy cut short is named as one (torch said "OSError: [Errno 22]
    Invalid argument"), a pickle of other objects as refused with its cause, without torch's advice to load it with
    weights_only=False or to file an issue, and a text file as not a torch file."""
    import pickle  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from retrieval.features.deep import _read_state  # noqa: PLC0415

    torch.save({"w": torch.zeros(64, 64)}, tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:2000])
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"a": object()}, protocol=2))
    (tmp_path / "text.pt").write_text("not a model\n")
    np.savez(tmp_path / "arrays.npz", a=np.zeros(3))  # torch said "[enforce fail at inline_container.cc:180] ..."
    for name, cause in (
        ("arrays.npz", r"a zip archive without torch.save's data.pkl \(it holds a.npy: a NumPy .npz\?\)\)$"),
        ("cut.pt", r"a torch archive cut short or damaged, 2000 bytes .*: copy the file again\)$"),
        (
            "evil.pt",
            r"refused by weights_only=True: Unsupported global: GLOBAL object was not an allowed global by default\. \(only"
            r".* save the state dict alone: torch.save\(model.state_dict\(\)",
        ),
        ("text.pt", r"not a torch file: it starts with b'not ', where torch.save's zip archive starts with b'PK'\)$"),
    ):
        with pytest.raises(ValueError, match=rf"{name}: not a loadable resnet state dict \({cause}") as e:
            _read_state(str(tmp_path / name), "resnet")
        assert not any(advice in str(e.value) for advice in ("set to `False`", "file an issue", "add_safe_globals"))
    assert list(_read_state(str(tmp_path / "whole.pt"), "resnet")) == ["w"]
    # a state dict under a key not looked in: the keys found are named (helper-145)
    torch.save({"weights": {"w": torch.zeros(2)}, "epoch": 3}, tmp_path / "nested.pt")
    with pytest.raises(
        ValueError, match=r"nested\.pt: expected a state dict .*top level holds 'weights' \(dict\), 'epoch'"
    ):
        _read_state(str(tmp_path / "nested.pt"), "resnet")


def test_an_exported_file_is_checked_against_its_exports_record(tmp_path):
    """A new user's trial shuffled one image's descriptors in an exported HDF5 in place: it still read, and sv's
    Medium mAP moved by 2.4 without a word. A file named in the export's manifest must have its recorded size and
    SHA-1, also after the folder is moved (matched by file name)."""
    made = tmp_path / "results" / "export" / "demo"
    made.mkdir(parents=True)
    (made / "nn_sift.pkl").write_bytes(b"abcdef" * 100)
    (made / "other.txt").write_text("not exported")
    Manifest("export_ames", "v1", {}).write(made / "manifest.json", outputs=[made / "nn_sift.pkl"])
    moved = tmp_path / "release" / "demo"
    moved.parent.mkdir()
    made.rename(moved)
    check_recorded(moved / "nn_sift.pkl")  # as exported
    check_recorded(moved / "other.txt")  # not named in the record: not checked
    data = bytearray((moved / "nn_sift.pkl").read_bytes())
    data[300] ^= 1  # the same size, another byte
    (moved / "nn_sift.pkl").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"nn_sift\.pkl: not the file its export recorded in .*manifest\.json \(SHA-1"):
        check_recorded(moved / "nn_sift.pkl")
    check_recorded(moved / "nn_sift.pkl", sha1=False)  # size only: a chunk that does not hash the whole file
    (moved / "nn_sift.pkl").write_bytes(bytes(data[:-1]))
    with pytest.raises(ValueError, match=r"\(599 bytes, recorded 600\): edited or damaged since"):
        check_recorded(moved / "nn_sift.pkl", sha1=False)
    record = json.loads((moved / "manifest.json").read_text())
    (moved / "manifest.json").write_text(json.dumps({**record, "stage": "extract"}))  # not an export's: not read
    check_recorded(moved / "nn_sift.pkl")
    (moved / "manifest.json").write_text("{")  # unreadable: nothing to check against
    check_recorded(moved / "nn_sift.pkl")

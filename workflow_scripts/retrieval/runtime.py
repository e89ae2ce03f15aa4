"""Process-level helpers shared by every stage: thread limits, atomic writes, hashing, manifests."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import h5py
import numpy as np
from threadpoolctl import threadpool_info

if TYPE_CHECKING:  # only for annotations: importing this module never loads torch
    import torch

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


# when this process imported the runtime: every entry point does so first, so it is the start of the job's work
PROCESS_STARTED = time.time()
_threads: int | None = None  # what limit_threads set: recorded in every manifest (faiss's k-means depends on it)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_MMAP_THRESHOLD = 256 << 20  # bytes; 32 MB (glibc's dynamic maximum) still left AMES logits 7 s in the kernel


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve blocks of up to 256 MB from its heap (``M_MMAP_THRESHOLD``) and keep freed memory
    for reuse instead of returning it to the kernel (``M_TRIM_THRESHOLD`` 1 GiB).

    Without it, buffers allocated and freed once per image, batch or product (OpenCV's SIFT pyramids, AMES
    activations, similarity blocks) are mapped fresh each time and their pages fault again (with transparent huge
    pages, each fault zeroes 2 MB): a 332-image SIFT chunk spent 12.5 s of its 42.7 s in the kernel and took 28.0 s
    with this; AMES logits of 1,200 demo pairs 32.5-33.2 s, then 23.6-24.7 s (README, "Speed"). A job's resident
    memory stays at its peak until it exits. Returns False (and changes nothing) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


# oneDNN (torch's CPU matrix products in bfloat16) compiles a kernel per matrix shape and keeps 1024 of them.
# AMES training draws its descriptor counts per step, so its products take about 1,900 shapes: with 1024 kept,
# kernels were evicted and compiled again (2.5-3 ms each, about 760 per epoch). 8192 keeps all of them.
ONEDNN_PRIMITIVE_CACHE_CAPACITY = 8192


def limit_threads(n: int) -> None:
    """Cap every threaded library at ``n`` threads so parallel Snakemake jobs don't oversubscribe, set up the
    allocator (:func:`keep_freed_memory`) and oneDNN's kernel cache: :data:`ONEDNN_PRIMITIVE_CACHE_CAPACITY`
    kernels, unless the environment sets ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` or its older name
    ``DNNL_PRIMITIVE_CACHE_CAPACITY`` (oneDNN reads it when it first compiles a kernel, so this works after torch
    is imported).

    Call this first in an entry point: the environment variables only take effect for libraries not yet
    imported; libraries already imported are set through their own APIs.
    """
    global _threads
    keep_freed_memory()
    if not {"ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"} & set(os.environ):  # oneDNN's names
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(ONEDNN_PRIMITIVE_CACHE_CAPACITY)
    n = max(1, int(n))
    _threads = n
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    import cv2  # noqa: PLC0415 - imported here so the env vars above are set first

    cv2.setNumThreads(n)
    import faiss  # noqa: PLC0415

    faiss.omp_set_num_threads(n)
    if "torch" in sys.modules:  # torch is heavy: honour OMP_NUM_THREADS when imported later, set it if present
        torch = sys.modules["torch"]
        torch.set_num_threads(n)


def stable_hash(obj: Any, length: int = 8) -> str:
    """Short hex digest of a JSON-serialisable object, independent of key order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def file_sha1(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """SHA-1 hex digest of a file's bytes, read in blocks of ``block`` bytes (4 MiB): the checksum manifests record."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


EXPORT_REMEDY = "copy the folder again, or export it again (results/export/ames/{dataset})"


def check_recorded(
    path: str | os.PathLike, sha1: bool = True, stage: str = "export_ames", remedy: str = EXPORT_REMEDY
) -> None:
    """Check a file against what the stage that wrote it recorded: the ``manifest.json`` beside it, written by
    ``stage`` (``outputs``: SHA-1 and size in bytes per file, matched here by file name, so a moved or copied folder
    is checked too; ``export_ames``'s folders, and ``image_lists``' ``lists.json`` and ``gnd.json``). ValueError
    naming the file, the manifest, what differs and ``remedy`` where its size (and, with ``sha1``, its SHA-1) is
    not the recorded one: an HDF5 edited in place, or a damaged copy, still reads, and was used without a word (a
    new user's trial: one image's descriptors shuffled moved sv's Medium mAP by 2.4; helper-143 edited the
    workflow's copy of the ground truth, and every evaluation read it: global Hard 86.30 to 93.69). A file without
    such a manifest (AMES's own release files), of another stage's, or not named in it is not checked."""
    path = Path(path)
    manifest = path.parent / "manifest.json"
    try:
        record = read_json(manifest)
    except (OSError, ValueError):
        return
    if not isinstance(record, dict) or record.get("stage") != stage or not isinstance(record.get("outputs"), dict):
        return
    entry = next((v for k, v in record["outputs"].items() if Path(k).name == path.name and isinstance(v, dict)), None)
    if entry is None:
        return
    size = path.stat().st_size
    differs = None
    if "bytes" in entry and size != entry["bytes"]:
        differs = f"{size} bytes, recorded {entry['bytes']}"
    elif sha1 and "sha1" in entry and (now := file_sha1(path)) != entry["sha1"]:
        differs = f"SHA-1 {now}, recorded {entry['sha1']}"
    if differs:
        who = "export" if stage == "export_ames" else stage
        raise ValueError(
            f"{path}: not the file its {who} recorded in {manifest} ({differs}): edited or damaged since; {remedy}"
        )


# the remedy for a lists.json or gnd.json of the workflow's that is not what image_lists wrote
LISTS_REMEDY = (
    "it is the workflow's copy, read from the dataset's folder: edit the dataset's own ground truth (gnd.json, "
    "gnd.csv, ...) instead, and make this copy again: add -R {path} after your target"
)


def read_lists(path: str | os.PathLike) -> Any:
    """The JSON of a ``lists.json`` (or ``gnd.json``) that ``image_lists`` wrote, checked first against the SHA-1 and
    size its manifest records (:func:`check_recorded`; a ``db.json`` or a file without that manifest is read as it
    is). ValueError naming the file and :data:`LISTS_REMEDY` for one edited since: helper-144 renamed an image in
    the workflow's ``lists.json``, and the merge, aggregation, kNN and search read it (the search listed a file
    that does not exist) while only the evaluations refused it."""
    check_recorded(path, stage="image_lists", remedy=LISTS_REMEDY.format(path=path))
    return read_json(path)


def _umask() -> int:
    """The process's umask (read by setting it and restoring it at once; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds.

    A killed or failing job therefore never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # leftovers of an earlier attempt that was killed (SIGKILL skips the cleanup below); the workflow's lock
    # guarantees no other writer of this path is running
    for stale in path.parent.glob(f".{path.name}.*.part"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    # mkstemp creates the file readable by its owner only (0600), and writers that reopen it keep that mode: give it
    # the mode a plain open() would (0666 less the umask), so results on a shared disk are readable as usual
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class Progress:
    """Progress lines for long loops, into the rule's log: about every tenth of the work, at most one line per
    ``min_interval`` seconds (a short loop of 20 images wrote ten lines in 6 ms, a new user's trial), and at the end."""

    def __init__(
        self, logger: Any, what: str, total: int, unit: str = "items", steps: int = 10, min_interval: float = 1.0
    ):
        self.logger, self.what, self.total, self.unit = logger, what, max(int(total), 1), unit
        self.every = max(self.total // steps, 1)
        self.t0 = self.last = time.time()
        self.next = self.every
        self.min_interval = min_interval

    def update(self, done: int) -> None:
        """Log a progress line (done / total, percent, rate per second, seconds left) once ``done`` reaches the next
        step (a ``steps``-th of the total) and ``min_interval`` seconds have passed since the last line, or reaches
        the total; otherwise nothing."""
        now = time.time()
        if done >= self.total or (done >= self.next and now - self.last >= self.min_interval):
            self.last = now
            dt = now - self.t0
            rate = done / dt if dt > 0 else float("inf")
            eta = (self.total - done) / rate if rate > 0 else 0.0
            self.logger.info(
                "%s: %d/%d %s (%.0f%%), %.1f %s/s, %.0f s left",
                self.what,
                done,
                self.total,
                self.unit,
                100.0 * done / self.total,
                rate,
                self.unit,
                eta,
            )
            self.next = (done // self.every + 1) * self.every


FAULT_ENV = "RETRIEVAL_FAULT"


FAULT_STEPS = ("extract", "merge", "train", "evaluate")


def fault_point(step: str) -> None:
    """Deterministic crash injection for the fault tests: ``RETRIEVAL_FAULT=<step>`` makes the job reaching this
    point kill itself with SIGKILL (as the OOM killer or a node failure would); ``RETRIEVAL_FAULT=<step>:run``
    kills the Snakemake process that started it as well. Unset (always, outside the tests): does nothing."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, _, scope = spec.partition(":")
    if target not in FAULT_STEPS or scope not in ("", "run"):
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected one of {FAULT_STEPS}, optionally with ':run'")
    if target != step:
        return

    sys.stderr.write(f"{FAULT_ENV}: killing the {step} step{' and its Snakemake run' if scope else ''} (SIGKILL)\n")
    sys.stderr.flush()
    if scope == "run":
        for pid in _snakemake_ancestors():
            os.kill(pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _snakemake_ancestors() -> list[int]:
    """PIDs of the ancestors of this process that run snakemake: ``snakemake ...``, ``python .../snakemake ...`` or
    ``python -m snakemake ...`` (not any command line that mentions the word: ``pytest -k killed_snakemake`` was
    killed with its test)."""
    out, pid = [], os.getppid()
    while pid > 1:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        if _runs_snakemake(argv):
            out.append(pid)
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _runs_snakemake(argv: list[str]) -> bool:
    """Whether a command line (argv) starts Snakemake: its program or script is named snakemake, or -m snakemake."""
    if any(Path(a).name == "snakemake" for a in argv[:2]):
        return True
    return any(a == "-m" and b == "snakemake" for a, b in zip(argv, argv[1:]))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` to ``path`` as JSON (indent 2, a final newline), atomically; numpy integers, floats and arrays and
    Paths are converted, anything else not serialisable raises TypeError and nothing is written."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``; ValueError naming the file for invalid JSON or text that is not UTF-8,
    FileNotFoundError / OSError when it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text, so not JSON ({e})") from e


def read_utf8(path: str | os.PathLike) -> str:
    """The text of a file a user writes (image lists, ``gnd.csv``, ``query_boxes.csv``), decoded as UTF-8 with a
    leading byte-order mark dropped (as Excel and Notepad save "UTF-8"); a file that starts with a UTF-16 byte-order
    mark (Excel's "Unicode Text", Notepad's "Unicode") is decoded as UTF-16: its mark says what it is. Raises
    ValueError naming ``path:line`` and the byte for text in another encoding (a CSV saved as Latin-1 or
    Windows-1252), or a UTF-16 file that does not decode, FileNotFoundError when the file is missing."""
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}: starts as UTF-16 text but does not decode ({e.reason}); save it as UTF-8"
            ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {column}); save the file as UTF-8"
        ) from None


def code_revision() -> str:
    """Git revision of the workflow code, with '-dirty' when the work tree has changes; 'unknown' outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of Python and of the installed distributions results depend on (numpy, opencv-python-headless,
    faiss-cpu, h5py, scikit-image, pillow, pillow-heif, snakemake, torch, asmk), by distribution name; those not
    installed are left out."""

    names = [
        "numpy",
        "opencv-python-headless",
        "faiss-cpu",
        "h5py",
        "scikit-image",
        "pillow",
        "pillow-heif",
        "snakemake",
        "torch",
        "asmk",
    ]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def hardware() -> dict[str, Any]:
    """What floating-point results depend on besides the code and configuration: the CPU's vector extensions
    (float32 kernels of torch, MKL/oneDNN and faiss take other summation orders on AVX-512 than on AVX2, so a seeded
    training or k-means can end elsewhere), the kernels the loaded libraries chose, and the thread count.
    Libraries not already imported are not imported for this.

    ``blas``: each loaded OpenBLAS (numpy's, faiss's, OpenCV's) with the kernels it chose for this CPU
    (threadpoolctl's ``architecture``, e.g. ``SkylakeX``, ``Haswell``, ``Prescott``). faiss-cpu's OpenBLAS 0.3.15
    picks them from the CPU's model number, so two Xeons with the same flags can run other kernels: the demo's global
    Medium mAP was 46.09 with its ``Prescott`` kernels and 46.45 with ``SkylakeX`` (same code and bytes in; README,
    "The demo's drift"). ``openblas_coretype``: the ``OPENBLAS_CORETYPE`` environment variable that forces them."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    out: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": sorted(
            flags & {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16"}
        ),
        "blas": [
            {
                "library": os.path.basename(info["filepath"]),  # faiss-cpu and OpenCV each bundle a 0.3.15
                **{key: info.get(key) for key in ("prefix", "version", "architecture", "threading_layer")},
            }
            for info in sorted(threadpool_info(), key=lambda info: info["filepath"])
            if info["user_api"] == "blas"
        ],
    }
    if os.environ.get("OPENBLAS_CORETYPE"):
        out["openblas_coretype"] = os.environ["OPENBLAS_CORETYPE"]
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
    faiss = sys.modules.get("faiss")
    if faiss is not None and hasattr(faiss, "get_compile_options"):
        out["faiss_compile_options"] = faiss.get_compile_options()
    return out


class Manifest:
    """Collects what an artifact came from and writes ``manifest.json`` next to it, last.

    Usage::

        m = Manifest("extract", version, config=params, preset=preset)
        m.add_input("lists", path, version=...)
        ...  # work
        m.write(out_dir / "manifest.json", outputs=[...])
    """

    def __init__(
        self,
        stage: str,
        version: str,
        config: dict[str, Any],
        preset: str | None = None,
        started: float | None = None,
        **extra: Any,
    ):
        """``started``: when the work began (seconds since the epoch; default now, for a manifest made before the
        work)."""
        self.data: dict[str, Any] = {
            "stage": stage,
            "version": version,
            "schema_version": 1,
            "preset": preset,
            "config": config,
            "inputs": {},
            **extra,
        }
        self._t0 = time.time() if started is None else started

    def add_input(self, name: str, path: str | os.PathLike, version: str | None = None, checksum: bool = True) -> None:
        """Record input ``name``: its path, ``version`` when given and, with ``checksum``, its SHA-1 when the path is a
        file (a folder or a missing path is recorded without one)."""
        entry: dict[str, Any] = {"path": str(path)}
        if version is not None:
            entry["version"] = version
        if checksum and Path(path).is_file():
            entry["sha1"] = file_sha1(path)
        self.data["inputs"][name] = entry

    def write(self, path: str | os.PathLike, outputs: list[str | os.PathLike] | None = None, **extra: Any) -> None:
        """Write the manifest to ``path`` (atomically), ``extra`` merged in first: the SHA-1 and size in bytes of each
        of ``outputs`` that is a file (others are left out), package versions, code revision, host, hardware, the
        thread count :func:`limit_threads` set (null where it was not called) and the timing (start in UTC, seconds
        since the work began)."""
        self.data.update(extra)
        self.data["outputs"] = {
            str(p): {"sha1": file_sha1(p), "bytes": Path(p).stat().st_size}
            for p in (outputs or [])
            if Path(p).is_file()
        }
        self.data["packages"] = package_versions()
        self.data["code_revision"] = code_revision()
        self.data["host"] = platform.node()
        self.data["hardware"] = hardware()
        self.data["threads"] = _threads
        self.data["timing"] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._t0)),
            "seconds": round(time.time() - self._t0, 3),
        }
        write_json(path, self.data)


# Exceptions that are said to the console in their own words, the traceback going to the job's log only: the
# errors the project raises for input it refuses (a missing or unreadable file, a bad row of a ground-truth file, a
# value out of range: ValueError and its subclasses such as BadImageError, StoreError and PlanError, and OSError
# such as FileNotFoundError), whose message names the file, line or key. A user's trial read the ten lines of
# traceback above "FileNotFoundError: ... gnd.json but not found" as a crash. Other types (TypeError, IndexError,
# ...) are the project's bugs and keep Python's traceback on the console too. An exception class may also set
# ``said_alone = True`` (download.OfflineError).
SAID_ALONE = (ValueError, OSError)


def _said_alone(exc_type: type) -> bool:
    return issubclass(exc_type, SAID_ALONE) or bool(getattr(exc_type, "said_alone", False))


def setup_logging(log_path: str | os.PathLike | None) -> None:
    """Send Python logging (INFO) to the rule's log file and stderr. An exception that ends the job is written to
    the log file too, with its traceback: Snakemake's failure message points at that file, which was otherwise empty
    when a job failed before logging anything. On stderr a refusal of input (:data:`SAID_ALONE`) is said in one
    line, ``{type}: {message}``, and where its traceback is; any other exception gets Python's traceback."""

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_path, mode="w")
        handlers.append(to_file)
        default_hook = sys.excepthook

        def log_uncaught(exc_type, exc, tb):
            if not issubclass(exc_type, KeyboardInterrupt):
                to_file.handle(
                    logging.getLogger(__name__).makeRecord(
                        __name__, logging.ERROR, __file__, 0, "the job failed:", None, (exc_type, exc, tb)
                    )
                )
                if _said_alone(exc_type):
                    print(f"{exc_type.__name__}: {exc}\n(its traceback is in {log_path})", file=sys.stderr)
                    return
            default_hook(exc_type, exc, tb)

        sys.excepthook = log_uncaught
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", handlers=handlers, force=True
    )


def write_rule_manifest(smk: Any, stage: str) -> None:
    """Write ``smk.output.manifest`` for a rule from its Snakemake object, once its work is done: params as
    configuration, every input with its version (the 8-hex directory in its path) and SHA-1, every other output with
    its checksum, its timing from the job's start (:data:`PROCESS_STARTED`); the preset from the params, else from the
    configuration (the import rules have no preset param, and their manifests said null: a new user's trial; a new
    param would have re-run every existing import)."""

    params = {k: v for k, v in smk.params.items()}
    preset = params.get("preset", (getattr(smk, "config", None) or {}).get("preset"))
    m = Manifest(stage, smk.wildcards.get("ver"), params, preset, started=PROCESS_STARTED)
    for name, path in smk.input.items():
        for i, p in enumerate([path] if isinstance(path, str) else list(path)):
            found = re.search(r"/([0-9a-f]{8})/", str(p))
            m.add_input(name if isinstance(path, str) else f"{name}[{i}]", p, version=found.group(1) if found else None)
    manifest = smk.output.manifest
    m.write(manifest, outputs=[o for o in smk.output if o != manifest])


def resolve_device(device: str, key: str = "ames.device") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; an explicit ``cuda[:N]`` without CUDA raises
    RuntimeError naming the configuration ``key`` the device came from. Lives here (the bottom layer) so extraction
    and AMES stages share it without importing each other."""
    import torch  # noqa: PLC0415

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"{key}: {device!r}, but this torch ({torch.__version__}) sees no CUDA GPU on this machine; "
            f"set {key}: auto (a GPU where there is one, else the CPU) or cpu"
        )
    return device


def state_digest(module: torch.nn.Module) -> str:
    """First 16 hex digits of the SHA-256 of a module's state dict (names and float bytes, in sorted order)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def open_h5(path: str | os.PathLike):
    """An HDF5 file opened read-only (``h5py.File``; use as a context manager). A file that is not there raises
    FileNotFoundError, and one h5py cannot open (truncated by a full disk or a killed copy, or not HDF5) a ValueError
    naming it and saying how to make it again (:func:`make_again`): h5py's own message names no file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: unreadable HDF5 file (truncated, or not HDF5: {e}); {make_again(path)}") from e


def make_again(path: str | os.PathLike) -> str:
    """How to make a damaged workflow file again: ``-R`` with its path re-runs the job that writes it and what uses
    it. A plain run does not: Snakemake makes no deleted file again while what used it is up to date, and a failed
    job's own outputs are removed (a new user's trial deleted a damaged knn file as told, then got "Nothing to be
    done" with the results naming files that were gone)."""
    return (
        f"make it again: add -R {path} after your target (snakemake --cores all results/... -R {path}); Snakemake "
        "re-runs the job that writes it and what uses it"
    )


def torch_load_problem(path: str | Path, e: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` raised ``e``, in a phrase that names the cause and the way out:
    a zip archive (torch.save's format) cut short, where torch said ``OSError: [Errno 22] Invalid argument``; a file
    that ``weights_only`` refused, with its cause but not torch's advice to load it with ``weights_only=False``
    (never done here: such a file could run code), its request to file an issue or its allowlisting advice; else the exception's type and
    first line. A file that is neither a zip archive nor a pickle (text, an image, ...) or an empty one is named as
    such before torch's exception is read (torch said ``KeyError: 101`` for a text file). Every loader of a model or tensor file names its file with it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        cut_short = head == b"PK\x03\x04" and not zipfile.is_zipfile(path)
    except OSError:
        head, cut_short = None, False
    if head == b"":
        return "an empty file: copy it again"
    if head is not None and not head.startswith((b"PK", b"\x80")):
        # torch.save writes a zip archive (PK), older torch a pickle (protocol 2+: 0x80); the unpickler read text as
        # opcodes and said KeyError: 101 or IndexError: pop from empty list
        return f"not a torch file: it starts with {head!r}, where torch.save's zip archive starts with b'PK'"
    if cut_short:
        return (
            f"a torch archive cut short or damaged, {os.path.getsize(path)} bytes without the zip directory that ends "
            "one (an interrupted copy or download?): copy the file again"
        )
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (OSError, zipfile.BadZipFile):
            names = None
        if names is not None and not any(n.endswith("/data.pkl") for n in names):
            # an .npz (or another zip) where torch said "[enforce fail at inline_container.cc:180] . file in archive
            # is not in a subdirectory: a.npy" (helper-145)
            kind = "a NumPy .npz?" if names and all(n.endswith(".npy") for n in names) else "not torch.save's"
            return f"a zip archive without torch.save's data.pkl (it holds {', '.join(names[:3]) or 'nothing'}: {kind})"
    text = str(e)
    if "WeightsUnpickler error:" in text:
        cause = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        cause = " ".join(cause.split("Please use `torch.serialization", 1)[0].split())  # its allowlisting advice
        if cause.startswith("Unsupported operand"):  # bytes that are no pickle at all (text, another format)
            return f"not a torch file: its unpickler read {cause}"
        return (
            f"refused by weights_only=True: {cause} (only tensors and plain containers are read: anything else could "
            "run code; where you trust the file, load it once with the code that wrote it and save the state dict "
            "alone: torch.save(model.state_dict(), 'weights.pth'), or from a checkpoint dict its state dict entry)"
        )
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read eagerly (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def is_readable(path: str | os.PathLike, mode: int = os.R_OK) -> bool:
    """Whether this process may read ``path`` (``os.access`` with ``mode``, for the effective user where the platform
    checks it; ``os.R_OK | os.X_OK`` for a folder to list and enter): False for a file without read permission, and
    for a missing one (callers tell the two apart)."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)

"""Image decoding as a viewer sees it; every image the project reads goes through here.

Rules (issue 14, item 1):

* **EXIF orientation first.** The tag (0x0112) is applied before anything else, as ``PIL.ImageOps.exif_transpose``
  does, so pixels, sizes and query boxes are all in the displayed orientation. Image sizes in the image lists are
  displayed sizes (width and height swapped for orientations 5-8). It is applied once: Pillow's TIFF reader turns
  the pixels itself while loading (and reports the displayed size at open), OpenCV turns 16-bit TIFFs itself, and
  what each reader left undone is applied here.
* **8 bits from the type's full range, never clamped.** 16-bit gray (Pillow modes ``I;16*``, and ``I``, read as
  16-bit) and 16-bit RGB(A) are divided by 257 and rounded (65535 -> 255); float images (mode ``F``) map
  [0, 1] to [0, 255] (rounded, outside values clipped, NaN -> 0). Pillow itself would clamp 16-bit gray to 255
  (a 16-bit photo becomes white) and keep only the high byte of 16-bit RGB, so 16-bit RGB(A) PNG/TIFF pixels are
  read by OpenCV (``IMREAD_UNCHANGED``) instead.
* **Transparency is composited on white** (``LA``, ``RGBA``, ``PA``, and a transparent colour of a palette, gray
  or RGB image, a PNG's tRNS):
  what a browser or photo viewer shows on a white page. CMYK, YCbCr, LAB and bilevel images convert with Pillow.
* **Size caps.** Pillow's decompression-bomb check is replaced by the project's cap ``max_pixels``
  (``max_image_pixels`` in the configuration; default 178,956,970, the size at which Pillow 13 refuses an image):
  a JPEG (or MPO, a camera JPEG with an embedded preview) above it is reduced while decoding (libjpeg's DCT
  scaling via ``Image.draft``, by 2, 4 or 8, the smallest that fits, at most what its thin side allows for an image
  narrower than 8 pixels), any other format above it is refused with ``BadImageError`` naming the file.
* **HEIC / HEIF** (what iPhones write by default) is read through ``pillow-heif`` (libheif), registered with Pillow
  here. libheif applies the file's own rotation and mirroring (the ``irot`` / ``imir`` properties, which the HEIF
  format uses instead of EXIF orientation) and pillow-heif then reports EXIF orientation 1, so the picture is
  rotated once, as a viewer shows it.
* **Colour management: pixels in sRGB.** An embedded ICC profile (a JPEG's APP2, a PNG's iCCP, a TIFF's, WebP's,
  HEIC's or AVIF's) that is not sRGB's is applied with LittleCMS (``PIL.ImageCms``, relative colorimetric intent)
  to give the sRGB pixels a colour-managed viewer shows: Display P3 (iPhones), Adobe RGB (cameras set to it),
  ProPhoto RGB (raw converters), a gray profile's tone curve, and a CMYK profile (print files) in place of
  Pillow's naive CMYK conversion. A profile whose transform to sRGB moves no probed colour by more than one level
  is sRGB's, whatever its name, and is not applied (applying it would only round). A profile that is damaged,
  cannot be used, or whose colour space is not the pixels' (an RGB profile on a gray image; not sRGB's, which is
  passed over) is warned about, naming the file, and not applied: the pixels are read as sRGB (a CMYK image's
  through Pillow's conversion), as before.
* **Colour code points: pixels in sRGB too.** A HEIF or AVIF without an ICC profile may describe its colour by
  H.273 code points (its ``nclx`` box: primaries and transfer function), as camera HEIF (Canon's HDR PQ, Sony's HLG)
  and most AVIF encoders do: Display P3, BT.2020, gamma, PQ and HLG are converted to sRGB
  (``retrieval.data.colour``: HDR reference white as SDR white, highlights compressed); sRGB's code points change
  nothing, and ones not converted are warned about, naming the file (pixels read as sRGB); reserved codes, which
  libheif itself refuses to open a HEIF with, make it a ``BadImageError`` as before. A JPEG or TIFF that a camera
  marked Adobe RGB in EXIF without a profile (ColorSpace uncalibrated and interoperability index ``R03``, DCF's way,
  or ColorSpace 2) is converted from Adobe RGB (1998) the same way.
* **Camera raw files** (``RAW_SUFFIXES``: ``.dng``, ``.nef``, ``.cr2`` ...) are read through LibRaw
  (``retrieval.data.raw``): the camera's own full-size preview when it has one, else a half-size demosaic with the
  camera's white balance, in sRGB, turned by the raw's orientation. A file LibRaw cannot read (a TIFF named
  ``.NEF``, which Pillow would read as its small first directory) is a ``BadImageError``. The pixel cap applies to
  what it gives.
* A file of several pages or frames (a multi-page TIFF, an animated WebP) is read at its first, with a warning.
* Every failure (missing, empty, truncated, not an image, over the cap) is a ``BadImageError`` (a ``ValueError``)
  whose message starts with the file's path; callers honour ``on_bad_image`` with it.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import re
import struct
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterator

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, UnidentifiedImageError, features
from pillow_heif import register_heif_opener

from retrieval.data.colour import ADOBE_RGB, CodedColour, coded_to_srgb, is_srgb, unsupported
from retrieval.data.orientation import transposed
from retrieval.data.raw import RawError, raw_header, read_raw
from retrieval.runtime import is_readable

log = logging.getLogger(__name__)

register_heif_opener()  # HEIC / HEIF through Pillow's own interface (pillow-heif's plugin)

# Pillow 13 refuses images above 2 x Image.MAX_IMAGE_PIXELS (89,478,485): the same limit, now applied by us, so an
# image Pillow could decode before still decodes, and one it refused gets a named error (JPEG: reduced instead).
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970


ORIENTATION_TAG = 0x0112


_DRAFT_REDUCTIONS = (2, 4, 8)  # the DCT scalings libjpeg offers

# formats libjpeg decodes: a camera JPEG with an embedded preview is reported as MPO (Multi-Picture Object)
_REDUCIBLE = ("JPEG", "MPO")


_WHITE = 255

NO_READ_PERMISSION = "no permission to read it"

# camera raw formats, read through LibRaw (``retrieval.data.raw``): the camera's own preview, or a half-size demosaic
RAW_SUFFIXES = (
    ".dng", ".nef", ".nrw", ".cr2", ".cr3", ".crw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef", ".srw",
    ".x3f", ".3fr", ".erf", ".kdc", ".mef", ".mos", ".mrw", ".iiq", ".rwl", ".raw",
)  # fmt: skip

# the suffixes (lower case) of files a folder scan lists as images. .jfif / .jpe: JPEGs as some browsers and Windows
# tools name them; .hif: HEIF as Fujifilm, Sony and Canon cameras name it; .avif: AV1 stills (Pillow's own reader);
# then the camera raw formats
IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".heic",
    ".heif",
    ".hif",
    ".avif",
) + RAW_SUFFIXES

# what a camera writes beside its raw file in RAW+JPEG (or RAW+HEIF) mode: a folder scan lists that, not the raw
CAMERA_RENDERED_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".heic", ".heif", ".hif")

# Google Pixel's RAW+JPEG names: PXL_20231010_123456789.RAW-01.MP.COVER.jpg beside ...RAW-02.ORIGINAL.dng
_PIXEL_PAIR = re.compile(r"^(.+)\.raw-\d+\..+$")


def raw_pair_key(path: PurePath) -> tuple[str, str]:
    """(folder, name) under which a camera's raw file and its JPEG / HEIF of one photo meet: the name without its
    suffix, case aside (``DSC_0001.NEF``, ``DSC_0001.JPG``), and, for a Pixel's pair, without what follows ``.RAW-``
    (``PXL_..._123.RAW-01.MP.COVER.jpg``, ``PXL_..._123.RAW-02.ORIGINAL.dng``)."""
    stem = path.stem.casefold()
    pixel = _PIXEL_PAIR.match(stem)
    return str(path.parent), pixel.group(1) if pixel else stem


class BadImageError(ValueError):
    """An image that cannot be used, the message naming the file: missing, empty, truncated, not an image, or over the
    pixel cap (a JPEG only when it is over even at 1/8 scale)."""

    pass


@dataclass(frozen=True)
class DecodedImage:
    """Pixels of an image as displayed: ``pixels`` uint8, (H, W) gray or (H, W, 3) in the requested channel order.

    ``width`` / ``height`` are the displayed size of the full image in pixels; the pixels are smaller only when a
    JPEG over the pixel cap was reduced while decoding by ``scale`` (2, 4 or 8; 1 otherwise): libjpeg's scaled IDCT
    makes pixel i of the reduced image from full-image pixels [i * scale, (i + 1) * scale), so its
    ceil(width / scale) x ceil(height / scale) pixels cover the full image, the last ones partly."""

    pixels: np.ndarray
    width: int
    height: int
    scale: int = 1

    @property
    def factor(self) -> tuple[float, float]:
        """(x, y) scale from full-image pixels to ``pixels``: (1 / scale, 1 / scale); (1.0, 1.0) unless reduced."""
        return 1.0 / self.scale, 1.0 / self.scale


@contextmanager
def no_pillow_bomb_check() -> Iterator[None]:
    """Pillow's own check raises DecompressionBombError (not an OSError) at open; our cap replaces it."""

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _decode_errors() -> tuple[type[BaseException], ...]:

    return (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
        Image.DecompressionBombError,
    )


# ISO base media file brands of HEIF and AVIF stills and sequences (the ftyp box's major brand)
_HEIF_BRANDS = (
    b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1", b"avif", b"avis"
)  # fmt: skip


def _reason(e: BaseException, path: Path | None = None) -> str:
    """A decoding error in a line: Pillow's "cannot identify image file" names the file object the image was read
    from (``<_io.BufferedReader name=...>``), so it is said without it; for a HEIF or AVIF file (by its ``ftyp``
    box) it is said as one, with libheif's reason (a truncated HEIC read as "not an image" suggested HEIC was not
    supported: helper-127)."""
    if isinstance(e, UnidentifiedImageError):
        container = _heif_reason(path) if path is not None else None
        return container or "UnidentifiedImageError: not an image, or a format Pillow cannot read"
    return f"{type(e).__name__}: {' '.join(str(e).split())}"  # one line: libheif's messages end in a newline


def _heif_reason(path: Path) -> str | None:
    """Why a file whose ``ftyp`` box names a HEIF / AVIF brand cannot be opened, from libheif; None for any other
    file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return None
    if len(head) < 12 or head[4:8] != b"ftyp" or head[8:12] not in _HEIF_BRANDS:
        return None
    brand = head[8:12].decode("ascii")
    if brand in ("avif", "avis") and not features.check("avif"):
        return f"an AVIF file (brand {brand}), which this Pillow cannot read: it was built without AVIF support"
    try:
        pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
    except Exception as e:  # noqa: BLE001 -- libheif's reason, whatever it raises, only to be said
        return f"a HEIF/AVIF file (brand {brand}) that cannot be read, damaged or truncated: {' '.join(str(e).split())}"
    return f"a HEIF/AVIF file (brand {brand}) that Pillow cannot open, damaged or truncated"


def _orientation(im) -> int:
    """The EXIF orientation tag (1-8); 1 when absent or not a valid value."""
    try:
        o = int(im.getexif().get(ORIENTATION_TAG, 1))
    except (TypeError, ValueError):
        return 1
    return o if 1 <= o <= 8 else 1


@contextmanager
def _warnings_named(path: Path) -> Iterator[None]:
    """Pillow's warnings while reading ``path`` (``Corrupt EXIF data ...``, which name no file) logged with its name."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                log.warning("%s: %s", path, str(w.message).strip())


def _not_empty(path: Path) -> None:
    """BadImageError for a missing, unreadable or empty file (Pillow's message for 0 bytes, "cannot identify image
    file", hides the cause: an interrupted copy or download; a folder without search permission makes even
    ``is_file`` raise)."""
    try:
        if not path.is_file():
            raise BadImageError(f"{path}: image not found")
        size = path.stat().st_size
    except PermissionError as e:
        raise BadImageError(f"{path}: {NO_READ_PERMISSION} ({e.strerror})") from e
    if not is_readable(path):
        raise BadImageError(f"{path}: {NO_READ_PERMISSION}")
    if size == 0:
        raise BadImageError(f"{path}: empty file (0 bytes)")


def _is_raw(path: Path) -> bool:
    return path.suffix.lower() in RAW_SUFFIXES


def _raw_header(path: Path, max_pixels: int) -> tuple[int, int, int]:
    """``image_header`` of a camera raw file (``retrieval.data.raw``): the size ``decode_image`` will give."""
    try:
        with _warnings_named(path), no_pillow_bomb_check():  # the cap is raw.py's, on what it will give
            layout = raw_header(str(path), max_pixels)
    except (RawError, *_decode_errors()) as e:
        raise BadImageError(f"{path}: {_raw_reason(e)}") from e
    return layout.width, layout.height, layout.orientation


def _read_raw(path: Path, max_pixels: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a camera raw file as displayed (``retrieval.data.raw``); BadImageError naming it."""
    try:
        with _warnings_named(path), no_pillow_bomb_check():
            return read_raw(str(path), max_pixels)
    except (RawError, *_decode_errors()) as e:
        raise BadImageError(f"{path}: {_raw_reason(e)}") from e


def _raw_reason(e: BaseException) -> str:
    """raw.py's own reason as it is; anything else it let through (a Pillow error it did not expect) with its type."""
    return str(e) if isinstance(e, RawError) else f"cannot decode camera raw file ({_reason(e)})"


def _displayed(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    w, h = size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _stored_size(im) -> tuple[int, int]:
    """(width, height) of the pixels as the file stores them. Pillow's TIFF reader reports the displayed size at
    open (its ImageWidth / ImageLength tags swapped for orientations 5-8) and applies the orientation itself while
    loading; every other reader reports the stored size and leaves the tag to the caller."""
    if im.format == "TIFF":
        try:
            return int(im.tag_v2[256]), int(im.tag_v2[257])  # ImageWidth, ImageLength
        except (KeyError, TypeError, ValueError):
            pass
    return im.size


def _draft_request(size: tuple[int, int], r: int) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for a reduction by ``r``: floor sizes, since Pillow's JPEG reader picks the
    scale min(w // rw, h // rh) rounded down to 1, 2, 4 or 8 (ceil sizes get less for odd sizes: 1001 // 501 = 1)."""
    return max(1, size[0] // r), max(1, size[1] // r)


def _draft_scale(size: tuple[int, int], r: int) -> int:
    """The scale (1, 2, 4 or 8) Pillow's JPEG ``draft`` applies for ``_draft_request(size, r)``: ``r``, or less for an
    image thinner than ``r`` pixels (the rule of JpegImagePlugin.draft)."""
    rw, rh = _draft_request(size, r)
    got = min(size[0] // rw, size[1] // rh)
    return next(s for s in (8, 4, 2, 1) if got >= s)


def _check_cap(path: Path, im, max_pixels: int) -> int:
    """The JPEG draft scale (1, 2, 4 or 8: the least that brings ``im`` under ``max_pixels``, as Pillow will apply
    it, see ``_draft_scale``); other formats over the cap refused, and a JPEG over it at every scale."""
    w, h = im.size
    if w * h <= max_pixels:
        return 1
    if im.format in _REDUCIBLE:
        for r in _DRAFT_REDUCTIONS:
            s = _draft_scale((w, h), r)
            if s > 1 and math.ceil(w / s) * math.ceil(h / s) <= max_pixels:
                return s
    raise BadImageError(
        f"{path}: {w}x{h} = {w * h:,} pixels is over max_image_pixels = {max_pixels:,}"
        + (
            f" even at 1/{_draft_scale((w, h), 8)} scale (the most libjpeg can reduce a {w}x{h} JPEG)"
            if im.format in _REDUCIBLE
            else f" ({im.format}; only JPEGs can be reduced while decoding)"
        )
        # a readable file: the cap is a setting (a stitched panorama's 20000 x 10000 TIFF is over the default; helper-121)
        + "; raise max_image_pixels (--config max_image_pixels=N) if the memory allows, or reduce the image"
    )


def image_header(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[int, int, int]:
    """(width, height, orientation) as displayed, from the file header (a PNG whose EXIF follows the pixel data is
    decoded to find it). Raises ``BadImageError`` naming the file when it is missing, not an image, or a non-JPEG
    over ``max_pixels``."""

    path = Path(path)
    _not_empty(path)
    if _is_raw(path):
        return _raw_header(path, max_pixels)
    try:
        # from a file object: given a path, Pillow memory-maps an uncompressed TIFF by its displayed size, which
        # scrambles an L, RGBA or I;16 TIFF of orientation 5-8
        with _warnings_named(path), no_pillow_bomb_check(), open(path, "rb") as fh, Image.open(fh) as im:
            _check_cap(path, im, max_pixels)
            o = _orientation(im)
            w, h = _displayed(_stored_size(im), o)
            return w, h, o
    except BadImageError:
        raise
    except _decode_errors() as e:
        raise BadImageError(f"{path}: cannot decode image ({_reason(e, path)})") from e


def _warn_pages(path: Path, im) -> None:
    """A warning for a file of several pages or frames (a multi-page TIFF, an animated WebP; not a camera JPEG with
    an embedded preview, MPO: 2 frames), of which the first is read. A page count Pillow cannot read (a TIFF whose
    next-page offset points at damaged tags: ``TypeError: Missing dimensions``) is warned about too, and the first
    page decoded as it is: Pillow has by then moved to the damaged page (its tags, orientation among them), so it is
    sent back to the first."""
    first = im.tell()
    try:
        n = getattr(im, "n_frames", 1)
    except (*_decode_errors(), TypeError, KeyError) as e:  # KeyError: a damaged Compression tag
        log.warning("%s: the number of pages cannot be read (%s); the first is read", path, _reason(e))
        if im.tell() != first:
            im.seek(first)
        return
    if n > 1 and im.format != "MPO":
        log.warning("%s: %d pages (frames); the first is read", path, n)


def _load(path: Path, im) -> None:
    """``im.load()``, with the errors of a damaged file that are not OSError / ValueError as a ``BadImageError``
    naming the file, for the formats that raise them only (elsewhere they are bugs, not bad images): libheif's
    RuntimeError on a HEIC / HEIF (e.g. an image-size box of 1,543,503,936 x 64 pixels), and Pillow's TypeError or
    KeyError on a TIFF whose tags are damaged (a StripOffsets tag of another type: ``'IFDRational' object cannot be
    interpreted as an integer``)."""
    try:
        im.load()
    except (RuntimeError, TypeError, KeyError) as e:
        damaged = (
            (RuntimeError,) if im.format in ("HEIF", "AVIF") else (TypeError, KeyError) if im.format == "TIFF" else ()
        )
        if not isinstance(e, damaged):
            raise
        raise BadImageError(f"{path}: cannot decode image ({_reason(e, path)})") from e


_SRGB = ImageCms.createProfile("sRGB")  # LittleCMS's built-in IEC 61966-2-1 sRGB

# the colours the pixels mean (ICC relative colorimetric): a camera's matrix / TRC profile gives the same under
# every intent, while a profile's perceptual tables are its maker's rendering choice (sRGB's v4 "preference"
# profile would move sRGB pixels, and LittleCMS adds black-point compensation to v4 perceptual transforms)
_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC

# an ICC profile's colour space (header bytes 16-19) -> the pixels it applies to: decoded (H, W, 3) RGB, (H, W) gray,
# or the Pillow image's own CMYK, before any conversion
_PROFILE_PIXELS = {"RGB ": "rgb", "GRAY": "gray", "CMYK": "cmyk"}


def _fallback(mode: str) -> str:
    """What decoding does with an image of Pillow ``mode`` whose profile is not applied, for the warnings."""
    return "Pillow's CMYK conversion used" if mode == "CMYK" else "pixels read as sRGB"


@functools.lru_cache(maxsize=8)
def _open_profile(icc: bytes) -> ImageCms.ImageCmsProfile:
    """LittleCMS's reading of profile bytes; raises ``ImageCms.PyCMSError`` or ``OSError`` where they are not one."""
    return ImageCms.ImageCmsProfile(io.BytesIO(icc))


def _description(icc: bytes) -> str:
    """A profile's description for messages; '' where Pillow cannot read it (a non-ASCII byte in a v2 ``desc``
    makes ``getProfileDescription`` fail while the profile itself is usable)."""
    try:
        return ImageCms.getProfileDescription(_open_profile(icc)).strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return ""


def _embedded_profile(path: str | Path, im) -> tuple[bytes, str] | None:
    """The ICC profile of an open Pillow image that decoding applies: ``(profile bytes, "rgb" | "gray" | "cmyk")``,
    the pixels it is for. None where the image has none, where the profile is sRGB's (its transform to sRGB moves
    no probed colour by more than one level: the pixels are already sRGB, whatever the profile is called), or, with
    a warning naming ``path``, where it is damaged, cannot be used, or is for other pixels than the image's."""
    if "icc_profile" in im.info and im.info["icc_profile"] is None:  # Pillow's mark of a profile it could not read
        log.warning("%s: its embedded ICC profile is damaged (incomplete or corrupt); %s", path, _fallback(im.mode))
        return None
    icc = im.info.get("icc_profile")
    if not icc:
        return None
    icc = bytes(icc)
    try:
        _open_profile(icc)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        log.warning("%s: its embedded ICC profile cannot be read (%s); %s", path, _reason(e), _fallback(im.mode))
        return None
    space = icc[16:20].decode("latin-1")
    pixels = _PROFILE_PIXELS.get(space)
    mode = im.mode
    if pixels == "cmyk":
        fits = mode == "CMYK"
    elif pixels == "gray":
        fits = _single_channel(mode)
    else:  # RGB, or a profile of another colour space (Lab, XYZ): unknown here
        fits = pixels == "rgb" and not _single_channel(mode) and mode not in ("CMYK", "LAB", "HSV")
    if space == "Lab " and mode == "LAB":  # Lab pixels, which Pillow converts to sRGB itself
        return None
    try:  # sRGB's profile is passed over quietly, on the pixels it is for or left on a gray image by some tools
        if pixels in ("rgb", "gray") and _is_srgb(icc, pixels):
            return None
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        if fits:
            log.warning("%s: its embedded ICC profile cannot be used (%s); %s", path, _reason(e), _fallback(mode))
            return None
    if not fits:
        log.warning(
            "%s: its embedded ICC profile (%r) is for %s pixels, the image's are %s; not applied (%s)",
            path,
            _description(icc),
            space.strip() or "unknown",
            mode,
            _fallback(mode),
        )
        return None
    return icc, pixels


# EXIF's ColorSpace tag (in the Exif IFD) and the interoperability index (tag 1 of the Interoperability IFD)
_EXIF_IFD, _INTEROP_IFD, _COLOR_SPACE, _INTEROP_INDEX = 0x8769, 0xA005, 0xA001, 0x0001
_UNCALIBRATED = 0xFFFF  # ColorSpace: not sRGB (1)
_MARKED = ("JPEG", "MPO", "TIFF")  # the formats cameras write EXIF colour marks in


def _marked_adobe_rgb(im) -> bool:
    """Whether a camera marked the image Adobe RGB in EXIF instead of embedding a profile, as DCF 2.0 has it for its
    option colour space: ColorSpace 0xFFFF (uncalibrated) with the interoperability index ``R03``; or ColorSpace 2,
    which some cameras write for Adobe RGB (outside the EXIF standard). False for a damaged EXIF block, and Pillow's
    warnings about one are not repeated here (they would name the photo at every decode; version 5 read no sub-IFD)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = im.getexif()
            space = exif.get_ifd(_EXIF_IFD).get(_COLOR_SPACE)
            if space == 2:
                return True
            if space != _UNCALIBRATED:
                return False
            index = exif.get_ifd(_INTEROP_IFD).get(_INTEROP_INDEX)
    except (TypeError, ValueError, KeyError, OSError, struct.error):
        return False
    if isinstance(index, bytes):
        index = index.decode("latin-1")
    return isinstance(index, str) and index.strip("\x00 ") == "R03"


def _coded_colour(path: Path, im) -> CodedColour | None:
    """The colour description of an image without an ICC profile (a profile takes precedence, even one that is
    damaged or cannot be used: the pixels are then read as sRGB, with its warning) that decoding
    converts (``retrieval.data.colour``): a HEIF's or AVIF's ``nclx`` code points, or Adobe RGB marked in a JPEG's
    or TIFF's EXIF (``_marked_adobe_rgb``). None where there is none or it is sRGB's, and, with a warning naming
    ``path``, where it cannot be read or converted. pillow-heif reports a HEIF's code points; Pillow's AVIF reader
    reports none, so an AVIF's are read with libheif, which parses AVIF boxes without decoding the AV1 image."""
    if im.info.get("icc_profile") or "icc_profile" in im.info and im.info["icc_profile"] is None:
        return None
    if im.format in _MARKED:  # colour images only: an Adobe RGB profile on a gray image is not applied either
        colour = im.mode not in ("CMYK", "LAB") and not _single_channel(im.mode)
        return ADOBE_RGB if colour and _marked_adobe_rgb(im) else None
    if im.format == "AVIF":
        try:
            nclx = pillow_heif.open_heif(path, convert_hdr_to_8bit=True).info.get("nclx_profile")
        except Exception as e:  # noqa: BLE001 -- libheif's reason, whatever it raises, only to be said
            log.warning("%s: its colour description cannot be read (%s); pixels read as sRGB", path, _reason(e))
            return None
    else:
        nclx = im.info.get("nclx_profile")
    if not nclx:
        return None
    try:
        coded = CodedColour.from_nclx(nclx)
    except (KeyError, TypeError, ValueError) as e:
        log.warning("%s: its colour description (nclx) is incomplete (%s); pixels read as sRGB", path, _reason(e))
        return None
    if is_srgb(coded):
        return None
    reason = unsupported(coded)
    if reason is not None:
        log.warning("%s: its colour description (%s) is not applied: %s; pixels read as sRGB", path, coded.describe(),
                    reason)  # fmt: skip
        return None
    return coded


def _coded_to_srgb(path: Path, pixels: np.ndarray, coded: CodedColour) -> np.ndarray:
    """``pixels`` converted from ``coded`` to sRGB; a conversion that fails is warned about, naming ``path``, and the
    pixels are read as sRGB: the code points never refuse an image its pixels could be read from."""
    try:
        return coded_to_srgb(pixels, coded)
    except (ValueError, FloatingPointError) as e:
        log.warning("%s: its colour description (%s) cannot be applied (%s); pixels read as sRGB", path,
                    coded.describe(), _reason(e))  # fmt: skip
        return pixels


# Pillow modes decoded to (H, W) gray here (``_to_8bit_rgb_or_gray``); the others to (H, W, 3) RGB
_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "1", "L", "LA", "La", "F")


def _single_channel(mode: str) -> bool:
    """Whether Pillow ``mode`` decodes to (H, W) gray here (``_to_8bit_rgb_or_gray``)."""
    return mode in _GRAY_MODES


@functools.lru_cache(maxsize=8)
def _to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform:
    """A LittleCMS transform from the profile ``icc`` to sRGB, for Pillow ``mode`` (RGB or CMYK) to RGB; a
    collection's photos share a few profiles, and building one takes milliseconds."""
    profile = _open_profile(icc)
    return ImageCms.buildTransform(profile, _SRGB, mode, "RGB", renderingIntent=_INTENT)


@functools.lru_cache(maxsize=8)
def _gray_to_srgb(icc: bytes) -> np.ndarray:
    """A gray profile's 256 levels in sRGB, uint8 (256,): LittleCMS's transform of each level, unoptimised (its
    optimised 8-bit gray-to-RGB table is up to 10 levels off in the shadows for a linear gray profile)."""
    profile = _open_profile(icc)
    transform = ImageCms.buildTransform(
        profile, _SRGB, "L", "RGB", renderingIntent=_INTENT, flags=ImageCms.Flags.NOOPTIMIZE
    )
    levels = Image.fromarray(np.arange(256, dtype=np.uint8)[None, :], "L")
    table = np.asarray(ImageCms.applyTransform(levels, transform).convert("L"))[0].copy()
    table.setflags(write=False)  # cached: shared by every image with this profile
    return table


# every 8-bit level of each channel at 17 steps (4,913 colours) and the 256 grays
_PROBE = np.concatenate(
    [
        np.stack(np.meshgrid(*[np.linspace(0, 255, 17).round()] * 3, indexing="ij"), axis=-1).reshape(-1, 3),
        np.repeat(np.arange(256)[:, None], 3, axis=1),
    ]
).astype(np.uint8)[None]


@functools.lru_cache(maxsize=8)
def _is_srgb(icc: bytes, kind: str) -> bool:
    """Whether an RGB or gray profile is sRGB's: its transform to sRGB moves no probed colour (``_PROBE``; a gray
    profile: each of its 256 levels) by more than one 8-bit level. Cameras and editors embed sRGB under many names
    (``sRGB IEC61966-2.1``, ``sRGB2014``, ``sRGB built-in``) and name other profiles after it (GIMP's ``Linear
    sRGB``), so the content decides; a CMYK profile never is. Raises ``ImageCms.PyCMSError`` where no transform can
    be built from the profile."""
    if kind == "cmyk":
        return False
    if kind == "gray":
        return int(np.abs(_gray_to_srgb(icc).astype(int) - np.arange(256)).max()) <= 1
    moved = np.asarray(ImageCms.applyTransform(Image.fromarray(_PROBE, "RGB"), _to_srgb(icc, "RGB")))
    return int(np.abs(moved.astype(int) - _PROBE).max()) <= 1


def _apply_profile(path: Path, icc: bytes, mode: str, im: Image.Image | None) -> Image.Image | np.ndarray | None:
    """``im`` (Pillow ``mode``: RGB, L or CMYK) through ``icc`` to sRGB: an RGB image (for RGB ``im`` itself,
    transformed in place), for L the 256 levels' sRGB gray (uint8 (256,)). LittleCMS's refusal of a profile it read
    (a lookup table it cannot use) is warned about and ``None`` returned (pixels read as sRGB)."""
    try:
        if mode == "L":
            return _gray_to_srgb(icc)
        if mode == "RGB":  # in place: the image is this module's own (opened here, or made from its pixels)
            ImageCms.applyTransform(im, _to_srgb(icc, mode), inPlace=True)
            return im
        return ImageCms.applyTransform(im, _to_srgb(icc, mode))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        log.warning("%s: its embedded ICC profile cannot be applied (%s); %s", path, _reason(e), _fallback(mode))
        return None


def _managed(path: Path, profile: tuple[bytes, str] | None, pixels: np.ndarray) -> np.ndarray:
    """Decoded uint8 pixels ((H, W) gray or (H, W, 3) RGB) in sRGB through an RGB or gray ``profile``
    (``_embedded_profile``); a gray image stays gray (sRGB's gray of its levels: R = G = B, so luma is exact)."""
    if profile is None:
        return pixels
    icc, kind = profile
    if kind == "gray":
        levels = _apply_profile(path, icc, "L", None)
        return pixels if levels is None else levels[pixels]
    out = _apply_profile(path, icc, "RGB", Image.fromarray(pixels, "RGB"))
    return pixels if out is None else np.asarray(out)


def _rawmode(im) -> str:
    args = im.tile[0].args if im.tile else ""
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _is_16bit_colour(im) -> bool:
    raw = _rawmode(im)
    return im.mode in ("RGB", "RGBA") and ";16" in raw


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) float in [0, 255] -> (H, W, 3) float: alpha-blended on a white background."""
    a = rgba[:, :, 3:4] / 255.0
    return rgba[:, :, :3] * a + _WHITE * (1.0 - a)


def _read_16bit_colour(path: Path) -> np.ndarray | None:
    """16-bit RGB(A) PNG/TIFF as (H, W, 3) float RGB in [0, 255] (v / 257; alpha composited on white), in whatever
    orientation OpenCV gives (see ``_oriented_16bit_colour``); None when OpenCV cannot read it."""
    import cv2  # noqa: PLC0415

    try:
        a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        a = None
    if a is None or a.dtype != np.uint16 or a.ndim != 3 or a.shape[2] not in (3, 4):
        return None
    x = a.astype(np.float64) / 257.0
    x = x[:, :, [2, 1, 0, 3][: x.shape[2]]]  # BGR(A) -> RGB(A)
    return _composite_on_white(x) if x.shape[2] == 4 else x


def _oriented_16bit_colour(path: Path, displayed_high_byte: np.ndarray, orientation: int) -> np.ndarray:
    """16-bit colour pixels (H, W, 3) uint8 (v / 257, rounded) in the displayed orientation.

    OpenCV reads the 16 bits, but whether it applies the orientation depends on the format and its version (OpenCV
    5.0's ``imdecode`` turns a TIFF by its tag and ignores a PNG's eXIf), so the pixels are
    matched against ``displayed_high_byte``, Pillow's decode of the same file (its high byte, within 1 of v / 257;
    a PNG's tRNS colour, which OpenCV makes transparent and Pillow keeps, differs more): as read, or turned by
    ``orientation``, whichever is closer (the same picture either way when both are). Where OpenCV cannot read
    the file, Pillow's high byte is used, with a warning. ``BadImageError`` when neither has Pillow's shape or the
    closer differs by more than 64 levels on average (the two libraries read different pictures)."""
    x = _read_16bit_colour(path)
    if x is None:
        log.warning("%s: 16-bit colour read at its high byte (Pillow): OpenCV cannot read this file", path)
        return displayed_high_byte
    rgb = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    best = None
    for candidate in (rgb, transposed(rgb, orientation)):
        if candidate.shape == displayed_high_byte.shape:
            err = float(np.abs(candidate.astype(np.int16) - displayed_high_byte).mean())
            if best is None or err < best[0]:
                best = (err, candidate)
    if best is not None and best[0] <= 64:
        return best[1]
    raise BadImageError(
        f"{path}: OpenCV's 16-bit pixels {rgb.shape} are not Pillow's {displayed_high_byte.shape} of the same file "
        f"in any orientation it could have applied (orientation {orientation})"
    )


def _transparent_level(im, raw: str, values: np.ndarray) -> np.ndarray | None:
    """Where a gray image shows its transparent level (a PNG's tRNS gray sample), as a bool mask of ``values`` (the
    image as numpy gives it); None without one. Pillow keeps the file's sample for 2- and 4-bit gray (rawmode
    ``L;2`` / ``L;4``), whose pixels it stretches to 0-255, so the sample is stretched the same way here; 16-bit
    samples are compared as stored; a bilevel image's is already 0 or 255."""
    t = im.info.get("transparency")
    if not isinstance(t, int):
        return None
    low = re.fullmatch(r"L;([124])", raw)
    if low:
        t = t * 255 // (2 ** int(low.group(1)) - 1)
    if values.dtype == bool:
        return values == (t != 0)
    return values == t


def _to_8bit_rgb_or_gray(im, raw: str = "") -> np.ndarray:
    """A loaded Pillow image -> uint8 (H, W) for single-channel modes, else (H, W, 3) RGB; ``raw``: its rawmode, read
    before loading (``_rawmode``). A transparent colour (a PNG's tRNS: a palette entry, an RGB value or a gray
    level at any bit depth) is composited on white, as alpha is."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "1", "L"):
        values = np.asarray(im)
        if mode in ("1", "L"):
            x = np.asarray(im.convert("L")).copy()
        else:
            x = np.clip(np.rint(values.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        clear = _transparent_level(im, raw, values)
        if clear is not None:
            x[clear] = _WHITE
        return x
    if mode == "F":
        x = np.nan_to_num(np.asarray(im).astype(np.float64), nan=0.0) * 255.0
    elif mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode in ("P", "RGB") and "transparency" in im.info):
        x = _composite_on_white(np.asarray(im.convert("RGBA")).astype(np.float64))
        if mode in ("LA", "La"):
            x = x[:, :, 0]
    else:  # RGB, CMYK, P, YCbCr, LAB, HSV, RGBX
        return np.asarray(im.convert("RGB"))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def decode_image(path: str | Path, colour: str = "rgb", max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> DecodedImage:
    """Decode ``path`` as a viewer shows it (see the module docstring) to uint8 ``colour``: ``gray`` (H, W),
    ``rgb`` or ``bgr`` (H, W, 3). Gray from colour uses Pillow's ITU-R 601-2 luma (``convert("L")``).

    Raises ``BadImageError`` naming the file: missing, empty, truncated (Pillow refuses what OpenCV would pad),
    not an image, or over ``max_pixels`` and not a JPEG."""

    if colour not in ("gray", "rgb", "bgr"):
        raise ValueError(f"colour must be gray, rgb or bgr, not {colour!r}")
    path = Path(path)
    _not_empty(path)
    if _is_raw(path):
        return _as_colour(_read_raw(path, max_pixels), colour, 1)
    try:
        # from a file object: given a path, Pillow memory-maps an uncompressed TIFF by its displayed size, which
        # scrambles an L, RGBA or I;16 TIFF of orientation 5-8
        with _warnings_named(path), no_pillow_bomb_check(), open(path, "rb") as fh, Image.open(fh) as im:
            reduction = _check_cap(path, im, max_pixels)
            raw = _rawmode(im)  # before getexif, which decodes a PNG and drops its tile list
            colour16 = _is_16bit_colour(im)
            orientation = _orientation(im)
            stored = _stored_size(im)
            width, height = _displayed(stored, orientation)
            if reduction > 1:
                im.draft(im.mode, _draft_request(im.size, reduction))
            _warn_pages(path, im)
            _load(path, im)  # Pillow's full decode: refuses a truncated file, as for every other image
            # what the reader left to apply: Pillow's TIFF reader turns the pixels while loading and drops the tag
            left = _orientation(im) if orientation != 1 else 1
            profile = _embedded_profile(path, im)
            coded = _coded_colour(path, im)  # HEIF/AVIF code points or Adobe RGB marked in EXIF, without a profile
            # a CMYK image's profile needs its inks, and an 8-bit RGB image's (a camera JPEG) is applied to Pillow's
            # pixels, without two copies of them (a third of the time for a 12-megapixel JPEG); the other images'
            # after their conversion to 8-bit RGB or gray (a transparent colour is matched before it)
            source = im
            if profile is not None and (
                profile[1] == "cmyk" or (im.mode == "RGB" and "transparency" not in im.info and not colour16)
            ):
                srgb = _apply_profile(path, profile[0], im.mode, im)
                source, profile = (im if srgb is None else srgb), None
            pixels = transposed(_to_8bit_rgb_or_gray(source, raw), left)
            if colour16:  # Pillow keeps only the high byte of 16-bit colour: OpenCV reads the 16 bits
                pixels = _oriented_16bit_colour(path, pixels, orientation)
            pixels = _managed(path, profile, pixels)
            if coded is not None:
                pixels = _coded_to_srgb(path, pixels, coded)
    except BadImageError:
        raise
    except _decode_errors() as e:
        raise BadImageError(f"{path}: cannot decode image ({_reason(e, path)})") from e
    planned = (math.ceil(height / reduction), math.ceil(width / reduction))
    if reduction > 1 and pixels.shape[:2] != planned:  # libjpeg reduced otherwise than Pillow's rule says
        raise BadImageError(
            f"{path}: decoded {pixels.shape[1]}x{pixels.shape[0]} pixels where a reduction by {reduction} gives "
            f"{planned[1]}x{planned[0]} (max_image_pixels = {max_pixels:,})"
        )
    if reduction == 1 and pixels.shape[:2] != (height, width):  # the orientation applied twice or not at all
        raise BadImageError(
            f"{path}: decoded {pixels.shape[1]}x{pixels.shape[0]} pixels, but its header says {width}x{height} as "
            f"displayed (orientation {orientation}): a reader this project does not know applied the orientation"
        )
    decoded = _as_colour(pixels, colour, reduction)
    return DecodedImage(decoded.pixels, width, height, reduction)


def _as_colour(pixels: np.ndarray, colour: str, reduction: int) -> DecodedImage:
    """``pixels`` (uint8 (H, W) or (H, W, 3) RGB) in ``colour``, as a DecodedImage of their own size."""
    if colour == "gray":
        if pixels.ndim == 3:
            pixels = np.asarray(Image.fromarray(pixels, "RGB").convert("L"))
    else:
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        if colour == "bgr":
            pixels = pixels[:, :, ::-1]
    h, w = pixels.shape[:2]
    return DecodedImage(np.ascontiguousarray(pixels), w * reduction, h * reduction, reduction)


def load_gray(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image to uint8 grayscale (H, W), as displayed (see ``decode_image``)."""
    return decode_image(path, "gray", max_pixels).pixels


def load_bgr(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image to uint8 BGR (H, W, 3), as OpenCV would give it, as displayed (see ``decode_image``)."""
    return decode_image(path, "bgr", max_pixels).pixels


def load_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image to uint8 RGB (H, W, 3), as displayed (see ``decode_image``)."""
    return decode_image(path, "rgb", max_pixels).pixels

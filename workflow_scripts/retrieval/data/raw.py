"""Camera raw files (``.dng``, ``.nef``, ``.cr2``, ``.arw`` ...) as photos, read through LibRaw (the ``rawpy``
package): a well-kept reader of some 1,200 cameras' formats, where our own code would only be a worse copy.

What a raw file gives (``read_raw``, uint8 (H, W, 3) RGB as displayed):

* **The camera's own rendering** when the file carries one large enough (below): the embedded JPEG preview (in
  Canon's, Nikon's, Pentax's, Fujifilm's and most cameras' DNGs, at or near the sensor's size). It is the picture
  the camera would have written as its JPEG (white balance, tone curve, lens corrections), so a raw photo matches
  the JPEGs of a collection as the camera's JPEG would. Other previews (uncompressed, HEVC, JPEG XL) are passed
  over (``_thumb``).
* **LibRaw's half-size demosaic** otherwise (no preview, or a small one: Sony's 1616 x 1080, a phone DNG's
  thumbnail): one RGB pixel per 2 x 2 Bayer quad (or per 6 x 6 X-Trans block's share), so no interpolation and a
  quarter of the sensor's pixels (a 24-megapixel raw gives 3000 x 2000, more than extraction keeps), the camera's
  white balance, sRGB primaries and curve (rawpy's default curve is BT.709's), 8 bits, LibRaw's automatic
  brightness (the 99th percentile to white, as dcraw). Fujifilm's SuperCCD, which LibRaw turns by 45 degrees, is
  rendered once more for its header's size. Not applied: a DNG's opcodes (GainMap's lens shading), its
  BaselineExposure and DefaultCrop. Data with no mosaic to halve (a linear DNG such as Apple ProRAW, Foveon, a monochrome sensor) is
  rendered at its full size the same way; a monochrome sensor's as gray RGB.

The preview is used when its longer side is at least half the sensor's (the half-size demosaic's, for a mosaic),
so a raw file is never read at fewer pixels than a mosaic's demosaic would give (a linear DNG with such a preview
is read from it, though LibRaw would render it at full size). Either way the pixels are turned by the raw's orientation
(LibRaw's ``flip``, from the file's EXIF); a preview is stored as the sensor is, so its own EXIF, when it has any,
is not read. ``raw_header`` gives the same size without decoding (the preview's size from its header, or the
demosaic's from LibRaw's sizes: rawpy tells whether the data is a mosaic only after reading it, about 0.14 s for a
24-megapixel DNG, so a raw file without a large preview is read once for its header).

Errors: ``RawError`` (a ``ValueError``) for a file LibRaw cannot read (not a raw file, an unsupported camera, a
damaged file) or a preview that cannot be decoded; the caller names the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import rawpy
from PIL import Image, UnidentifiedImageError

from retrieval.data.orientation import transposed

# LibRaw's ``flip`` (dcraw's: bit 4 transposes, bit 2 flips vertically, bit 1 horizontally, applied in that order)
# as the EXIF orientation (1-8) that shows the stored pixels the same way: dcraw maps EXIF orientation o to
# "50132467"[o & 7], whose inverse is this
FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


class RawError(ValueError):
    """A camera raw file that cannot be read: not a raw file LibRaw knows, damaged, or a preview that does not
    decode. The message gives LibRaw's (or Pillow's) reason, not the file: the caller names it."""


@dataclass(frozen=True)
class RawLayout:
    """What ``read_raw`` will give for one file, from its metadata: ``width`` x ``height`` pixels as displayed,
    ``orientation`` (EXIF 1-8) applied to the stored pixels, ``source`` ``"preview"`` or ``"demosaic"``."""

    width: int
    height: int
    orientation: int
    source: str


# the first bytes of the raw formats read here: TIFF (DNG, NEF, CR2, ARW, PEF, SRW, 3FR, ERF, KDC, MEF, MOS, ...),
# Olympus's ORF, Panasonic's and Leica's RW2 / RWL / RAW, Phase One's IIQ, Minolta's MRW, Sigma's X3F
_RAW_MAGIC = (b"II*\0", b"MM\0*", b"IIRO", b"IIRS", b"MMOR", b"IIU\0", b"IIII", b"\0MRM", b"FOVb")


def has_raw_signature(head: bytes) -> bool:
    """Whether ``head`` (a file's first 16 bytes or more) starts as a camera raw format read here does (above; also
    Fujifilm's RAF, Canon's CRW and CR3). LibRaw itself also takes a file without a header for a raw dump of some
    camera when its size is one it knows (307,200 bytes: 640 x 480), so any file of such a size, a pixel dump named
    ``.raw``, would be read as a photo of noise: such files are refused instead."""
    return (
        head[:4] in _RAW_MAGIC
        or head.startswith(b"FUJIFILM")  # RAF
        or (head[:2] == b"II" and head[6:14] == b"HEAPCCDR")  # CRW
        or (head[4:8] == b"ftyp" and head[8:11] == b"crx")  # CR3 (ISO base media, brand crx)
    )


def _open(path: str):
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as e:
        raise RawError(f"cannot read it ({e.strerror})") from e
    if not has_raw_signature(head):
        raise RawError(
            "not a camera raw file: its first bytes are those of no raw format read here (TIFF-based, ORF, RW2, RAF, "
            "CRW, CR3, IIQ, MRW, X3F); rename it if it is another image format, or remove it"
        )
    try:
        return rawpy.imread(path)
    except (rawpy.LibRawError, OSError) as e:
        raise RawError(f"LibRaw cannot read it as a camera raw file ({_libraw_reason(e)})") from e


def _libraw_reason(e: BaseException) -> str:
    """LibRaw's message in a line: rawpy passes it as bytes (``b'Unsupported file format or not RAW file'``)."""
    msg = e.args[0] if e.args else ""
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return f"{type(e).__name__}: {' '.join(str(msg).split())}"


def demosaic_size(width: int, height: int, pixel_aspect: float = 1.0, mosaic: bool = True) -> tuple[int, int]:
    """(width, height) of LibRaw's ``half_size`` output for a ``width`` x ``height`` sensor area, stored orientation:
    for a colour filter array (``mosaic``) the ceil of each half (LibRaw's ``(size + 1) >> 1``), for data with no
    mosaic to halve the size itself; then stretched as LibRaw's ``stretch`` does for pixels that are not square
    (``pixel_aspect`` < 1 lengthens the height, > 1 the width, rounded half up)."""
    w, h = ((width + 1) >> 1, (height + 1) >> 1) if mosaic else (width, height)
    if pixel_aspect < 1.0:
        h = int(h / pixel_aspect + 0.5)
    elif pixel_aspect > 1.0:
        w = int(w * pixel_aspect + 0.5)
    return w, h


def is_mosaic(raw) -> bool:
    """Whether a rawpy ``RawPy``'s data is a colour filter array (a Bayer 2 x 2 pattern, Fujifilm's X-Trans 6 x 6),
    which LibRaw's ``half_size`` halves; linear DNGs (already demosaiced: Apple ProRAW, a DNG converter's linear
    output), Foveon's three layers and monochrome sensors (a 1 x 1 pattern) are given at their full size."""
    pattern = raw.raw_pattern
    return raw.raw_type == rawpy.RawType.Flat and pattern is not None and pattern.size > 1


def _thumb(raw):
    """The embedded JPEG preview (rawpy's ``Thumbnail``, ``format`` JPEG, ``data`` its bytes), or None when the file
    has none LibRaw can give. Other previews are passed over: LibRaw gives an uncompressed one of more than 8 bits
    already turned by the raw's flip and brightened (its ``kodak_thumb_loader``), which rawpy cannot tell from an
    8-bit one (helper-132: turned twice and washed out), and raises ``NotImplementedError`` for an HEVC (a CR3 shot
    in HEIF mode) or JPEG XL one."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError, NotImplementedError):
        return None
    except rawpy.LibRawError as e:  # a preview whose bytes are not there (a truncated file): no preview
        if isinstance(e, (rawpy.LibRawIOError, rawpy.LibRawDataError)):
            return None
        raise RawError(f"its embedded preview cannot be read ({_libraw_reason(e)})") from e
    return thumb if thumb.format == rawpy.ThumbFormat.JPEG else None


def preview_size(thumb) -> tuple[int, int]:
    """(width, height) of a rawpy JPEG ``Thumbnail`` as stored, from its header. Raises ``RawError`` for bytes that
    are not an image."""
    try:
        with Image.open(io.BytesIO(thumb.data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise RawError(f"its embedded preview is not an image ({type(e).__name__}: {e})") from e


def preview_pixels(thumb) -> np.ndarray:
    """The pixels of a rawpy JPEG ``Thumbnail``, uint8 (H, W, 3) RGB as stored (its own EXIF orientation is not
    applied: see the module docstring). Raises ``RawError`` for a preview that does not decode (truncated)."""
    try:
        with Image.open(io.BytesIO(thumb.data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise RawError(f"its embedded preview does not decode ({type(e).__name__}: {e})") from e


def _displayed(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _render(raw) -> np.ndarray:
    """LibRaw's half-size rendering (see the module docstring), turned by its flip: uint8 (H, W, 1 or 3). sRGB's
    curve (2.4, 12.92), not rawpy's default BT.709 one (2.222, 4.5: 18% gray at 105 instead of sRGB's 118)."""
    return raw.postprocess(
        half_size=True,
        use_camera_wb=True,
        output_color=rawpy.ColorSpace.sRGB,
        gamma=(2.4, 12.92),
        output_bps=8,
    )


def _fuji_rotated(sizes) -> bool:
    """Whether LibRaw will turn the data by 45 degrees (Fujifilm's SuperCCD, ``fuji_width``; a DNG of CFALayout 2),
    which its sizes show as a height one less than the width (LibRaw's identify): the rendering's size is then known
    only by making it."""
    return int(sizes.height) == int(sizes.width) - 1


def _layout(raw, thumb, max_pixels: int | None) -> tuple[RawLayout, np.ndarray | None]:
    """The preview when its longer side is at least half the sensor's (a mosaic's half-size demosaic, which such a
    preview matches or beats) and it is within ``max_pixels``, read from metadata alone; otherwise the demosaic,
    whose size needs to know whether the data is a mosaic (``is_mosaic``), which rawpy tells only after reading the
    raw data (LibRaw's ``unpack``). Raises ``RawError`` for a demosaic over ``max_pixels``. The second item is the
    rendering where the size needed it (SuperCCD), so that ``read_raw`` does not make it twice; else None."""
    s = raw.sizes
    orientation = FLIP_TO_ORIENTATION.get(int(s.flip), 1)
    width, height, aspect = int(s.width), int(s.height), float(s.pixel_aspect)
    if thumb is not None:
        preview = preview_size(thumb)
        large = max(preview) >= max(demosaic_size(width, height, aspect))
        if large and (max_pixels is None or preview[0] * preview[1] <= max_pixels):
            return RawLayout(*_displayed(preview, orientation), orientation, "preview"), None
    rendered = None
    try:
        if _fuji_rotated(s):  # such sensors have at most 12 megapixels: made for its size, and kept
            rendered = _render(raw)
            h, w = rendered.shape[:2]
        else:
            w, h = demosaic_size(width, height, aspect, is_mosaic(raw))
    except rawpy.LibRawError as e:  # a truncated file: its raw data is not all there
        raise RawError(f"LibRaw cannot read its raw data ({_libraw_reason(e)})") from e
    if rendered is not None:  # LibRaw's output is turned already
        w, h = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    if max_pixels is not None and w * h > max_pixels:
        raise RawError(
            f"its demosaic is {w}x{h} = {w * h:,} pixels, over max_image_pixels = {max_pixels:,}; raise "
            "max_image_pixels (--config max_image_pixels=N) if the memory allows"
        )
    return RawLayout(*_displayed((w, h), orientation), orientation, "demosaic"), rendered


def raw_header(path: str, max_pixels: int | None = None) -> RawLayout:
    """What ``read_raw(path, max_pixels)`` gives, from the file's metadata and its preview's header (no demosaic).
    Raises ``RawError``, also for a demosaic over ``max_pixels`` (a preview over it is passed over)."""
    with _open(path) as raw:
        return _layout(raw, _thumb(raw), max_pixels)[0]


def read_raw(path: str, max_pixels: int | None = None) -> np.ndarray:
    """The photo of a camera raw file: uint8 (H, W, 3) RGB as displayed (see the module docstring), of the size
    ``raw_header`` gives. Raises ``RawError``, also for a demosaic over ``max_pixels`` (checked before it is made; a
    preview over it is passed over)."""
    with _open(path) as raw:
        thumb = _thumb(raw)
        layout, rendered = _layout(raw, thumb, max_pixels)
        if layout.source == "preview":
            pixels = transposed(preview_pixels(thumb), layout.orientation)
        elif rendered is not None:
            pixels = rendered
        else:
            try:
                # user_flip left to LibRaw: it turns the demosaic by the same flip
                pixels = _render(raw)
            except rawpy.LibRawError as e:
                raise RawError(f"LibRaw cannot demosaic it ({_libraw_reason(e)})") from e
            if pixels.ndim == 3 and pixels.shape[2] == 1:  # a monochrome sensor: gray as RGB, like a gray JPEG
                pixels = np.repeat(pixels, 3, axis=2)
    if pixels.shape[:2] != (layout.height, layout.width):  # LibRaw's sizes and its output disagree
        raise RawError(
            f"LibRaw gave {pixels.shape[1]}x{pixels.shape[0]} pixels where its sizes say {layout.width}x"
            f"{layout.height} ({layout.source})"
        )
    return np.ascontiguousarray(pixels)

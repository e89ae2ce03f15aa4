"""Camera raw files through LibRaw (``retrieval.data.raw``): DNGs written here from a known picture (a Bayer mosaic of
its linear RGB, with or without an embedded preview), read back through ``decode_image`` and ``image_header``."""

import io
import struct

import numpy as np
import pytest
import rawpy
import tifffile
from PIL import Image

from retrieval.data.datasets import build_database_list
from retrieval.data.images import BadImageError, decode_image, image_header, no_pillow_bomb_check
from retrieval.data.orientation import transposed
from retrieval.data.raw import (
    FLIP_TO_ORIENTATION,
    RawError,
    _thumb,
    demosaic_size,
    has_raw_signature,
    preview_pixels,
    preview_size,
    read_raw,
)

WHITE = 60000  # the DNG's white level
NEUTRAL = (0.5, 1.0, 0.7)  # the raw channels' values for white, relative to green (a warm light)


def _picture(h: int = 96, w: int = 128) -> np.ndarray:
    """uint8 (h, w, 3) sRGB: red, green and blue vertical bands over a horizontal ramp, so that both a turn and a
    mix-up of the CFA's colours show."""
    rgb = np.zeros((h, w, 3), np.uint8)
    ramp = np.linspace(40, 230, h).astype(np.uint8)[:, None]
    for c in range(3):
        rgb[:, c * w // 3 : (c + 1) * w // 3, c] = ramp
    rgb[: h // 8] = 255  # a white band on top: which way is up
    return rgb


def _linear(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64) / 255
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _srational(values) -> list[int]:
    return [v for x in values for v in (round(x * 10000), 10000)]


# XYZ (D65) -> linear sRGB: a camera whose raw channels are linear sRGB
_XYZ_TO_SRGB = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]


# Fujifilm's X-Trans 6 x 6 colour filter (0 red, 1 green, 2 blue)
XTRANS = np.array(
    [
        [1, 1, 0, 1, 1, 2],
        [1, 1, 2, 1, 1, 0],
        [2, 0, 1, 0, 2, 1],
        [1, 1, 2, 1, 1, 0],
        [1, 1, 0, 1, 1, 2],
        [0, 2, 1, 2, 0, 1],
    ]
)


def write_dng(
    path,
    rgb: np.ndarray,
    orientation: int = 1,
    preview: np.ndarray | None = None,
    layout: str = "bayer",
    preview_format: str = "jpeg",
    extra_tags: tuple = (),
) -> np.ndarray | None:
    """A DNG of ``rgb`` (uint8 sRGB): its linear values (16 bits, white level 60000), the camera's colour matrix that
    of linear sRGB, its channels' response to white ``NEUTRAL`` (the white balance as shot, which the reader must
    undo), EXIF ``orientation``. ``layout``: ``bayer`` an RGGB mosaic, ``xtrans`` Fujifilm's 6 x 6 mosaic,
    ``linear`` three values per pixel (a linear DNG, as Apple ProRAW), ``mono`` the green channel alone (a
    monochrome sensor: LinearRaw with one sample). With ``preview`` (uint8 RGB, as stored), that as IFD 0's preview
    and the raw data in its SubIFD, as cameras write DNGs: a JPEG (quality 95; ``preview_format="bitmap"``:
    uncompressed), written by Pillow into the strip of an uncompressed page, whose tags are then set to JPEG
    (tifffile writes JPEG only through imagecodecs). Returns the preview's pixels as a decoder sees them (the JPEG
    decoded by Pillow), or None without one."""
    lin = _linear(rgb) * np.asarray(NEUTRAL) * WHITE
    h, w = lin.shape[:2]
    dng = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "Test Camera", True),  # UniqueCameraModel
        (274, "H", 1, orientation, True),
    ]
    colour = [
        (50721, "2i", 9, _srational(_XYZ_TO_SRGB), True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, _srational(NEUTRAL), True),  # AsShotNeutral
    ]
    levels = [(50714, "H", 1, 0, True), (50717, "H", 1, WHITE, True)]  # BlackLevel, WhiteLevel
    if layout in ("bayer", "xtrans"):
        pattern = np.array([[0, 1], [1, 2]]) if layout == "bayer" else XTRANS
        ph, pw = pattern.shape
        channel = np.tile(pattern, (h // ph + 1, w // pw + 1))[:h, :w]
        data = np.round(np.take_along_axis(lin, channel[:, :, None], axis=2)[:, :, 0]).astype(np.uint16)
        photometric = 32803  # CFA
        extra = [(33421, "H", 2, (ph, pw), True), (33422, "B", pattern.size, tuple(pattern.ravel()), True)]
        raw = extra + colour + levels
    elif layout == "linear":
        data, photometric, raw = np.round(lin).astype(np.uint16), 34892, colour + levels  # LinearRaw
    elif layout == "mono":
        data, photometric, raw = np.round(lin[:, :, 1]).astype(np.uint16), "minisblack", levels
    else:
        raise ValueError(layout)
    raw = raw + list(extra_tags)
    if preview is None:
        tifffile.imwrite(path, data, photometric=photometric, subfiletype=0, extratags=dng + raw)
    else:
        with tifffile.TiffWriter(path) as tw:
            tw.write(preview, photometric="rgb", subfiletype=1, subifds=1, extratags=dng)
            tw.write(data, photometric=photometric, subfiletype=0, extratags=raw)
    if layout == "mono":  # tifffile writes LinearRaw with three samples only: the tag set to it afterwards
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0] if preview is None else tf.pages[0].pages[0]
            _set_tags(path, page, {262: 34892})  # PhotometricInterpretation
    if preview is None or preview_format == "bitmap":
        return None if preview is None else preview
    buf = io.BytesIO()
    Image.fromarray(preview).save(buf, "JPEG", quality=95)
    jpeg = buf.getvalue()
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        strip, room = page.dataoffsets[0], page.databytecounts[0]
        assert len(page.dataoffsets) == 1 and len(jpeg) <= room, "the preview's JPEG must fit its one strip"
        _set_tags(path, page, {259: 7, 262: 6, 279: len(jpeg)})  # Compression JPEG, YCbCr, StripByteCounts
    with open(path, "r+b") as fh:
        fh.seek(strip)
        fh.write(jpeg)
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def _set_tags(path, page, values: dict[int, int]) -> None:
    """Overwrite single-valued integer tags of ``page`` (a tifffile page of ``path``) in place."""
    for code, value in values.items():
        tag = page.tags[code]
        fmt = {3: "<H", 4: "<I"}[tag.dtype]
        with open(path, "r+b") as fh:
            fh.seek(tag.valueoffset)
            fh.write(struct.pack(fmt, value))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def test_a_raw_file_without_preview_is_demosaiced_at_half_size_turned_and_in_its_colours(tmp_path):
    """LibRaw's half-size demosaic: the picture at half size, turned by the raw's orientation (6: a quarter turn
    clockwise), its colours where they were, and the header's size the decoded one."""
    rgb = _picture()
    path = tmp_path / "DSC_0001.dng"
    write_dng(path, rgb, orientation=6)
    decoded = decode_image(path, "rgb")
    expected = transposed(rgb[::2, ::2].copy(), 6)  # (64, 48, 3)
    assert decoded.pixels.shape == expected.shape and decoded.scale == 1
    assert (decoded.width, decoded.height) == (48, 64) == image_header(path)[:2]
    assert image_header(path)[2] == 6
    assert _corr(decoded.pixels, expected) > 0.95
    assert _corr(decoded.pixels, transposed(rgb[::2, ::2].copy(), 8)) < 0.5  # the other quarter turn is not it
    # the bands keep their colours: each band's own channel is its brightest (a CFA read as BGGR would swap R and B)
    lower = transposed(decoded.pixels, 8)[8:]  # back to the stored orientation, below the white band
    for c in range(3):
        band = lower[:, c * 64 // 3 + 2 : (c + 1) * 64 // 3 - 2].reshape(-1, 3).mean(axis=0)
        assert band.argmax() == c and band[c] > 3 * np.delete(band, c).max(), band
    white = lower[:4].reshape(-1, 3).mean(axis=0)  # white stays white: the camera's white balance was applied
    assert white.min() > 0.9 * white.max(), white
    gray = decode_image(path, "gray")
    assert gray.pixels.shape == (64, 48)
    assert np.array_equal(decode_image(path, "bgr").pixels, decoded.pixels[:, :, ::-1])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_librawS_flip_is_the_exif_orientation_of_the_mapping(tmp_path, orientation):
    """LibRaw turns its demosaic by ``flip``; a preview is turned by ``FLIP_TO_ORIENTATION[flip]`` through the EXIF
    mapping. For every EXIF orientation the two must agree, or previews and demosaics of one camera would be turned
    differently."""
    rgb = _picture(64, 96)
    upright, turned = tmp_path / "o1.dng", tmp_path / f"o{orientation}.dng"
    write_dng(upright, rgb, orientation=1)
    write_dng(turned, rgb, orientation=orientation)
    with rawpy.imread(str(turned)) as raw:
        assert FLIP_TO_ORIENTATION[raw.sizes.flip] == orientation
    assert np.array_equal(read_raw(str(turned)), transposed(read_raw(str(upright)), orientation))


def test_a_full_size_preview_is_read_as_the_photo_turned_like_the_demosaic(tmp_path):
    """A preview at least as large as the half-size demosaic is the camera's rendering: its pixels exactly, turned by
    the raw's orientation, the same way up as the demosaic would be."""
    rgb = _picture()
    preview = rgb.copy()
    preview[-4:] = 7  # a mark only the preview has
    with_preview, without = tmp_path / "IMG_0002.dng", tmp_path / "IMG_0003.dng"
    seen = write_dng(with_preview, rgb, orientation=8, preview=preview)
    write_dng(without, rgb, orientation=8)
    decoded = decode_image(with_preview, "rgb")
    assert np.array_equal(decoded.pixels, transposed(seen, 8))
    assert image_header(with_preview) == (96, 128, 8)
    demosaic = decode_image(without, "rgb").pixels
    assert _corr(decoded.pixels[::2, ::2], demosaic) > 0.95


def test_a_preview_smaller_than_the_demosaic_is_not_used(tmp_path):
    """A thumbnail (here a quarter of the sensor's side, half the demosaic's) would read the photo at fewer pixels
    than the demosaic gives: the demosaic is read."""
    rgb = _picture()
    path = tmp_path / "small_preview.dng"
    write_dng(path, rgb, preview=np.zeros((24, 32, 3), np.uint8))
    decoded = decode_image(path, "rgb")
    assert decoded.pixels.shape == (48, 64, 3) and image_header(path) == (64, 48, 1)
    assert _corr(decoded.pixels, rgb[::2, ::2]) > 0.95
    # a preview of half the sensor's size (Sony's 1616 x 1080 of a 12-megapixel sensor) matches the demosaic's
    # pixels and is the camera's rendering: it is read
    half = np.full((48, 64, 3), 77, np.uint8)
    seen = write_dng(path, rgb, preview=half)
    assert np.array_equal(decode_image(path).pixels, seen) and image_header(path) == (64, 48, 1)
    # an uncompressed preview is passed over: LibRaw gives one of more than 8 bits turned and brightened already,
    # which rawpy cannot tell from this one (helper-132)
    write_dng(path, rgb, orientation=6, preview=rgb, preview_format="bitmap")
    assert decode_image(path).pixels.shape == (64, 48, 3) and image_header(path) == (48, 64, 6)


def test_odd_sensor_sizes_give_the_size_the_header_says(tmp_path):
    """``demosaic_size`` is LibRaw's rounding (up): the header of a 77 x 51 mosaic says what its demosaic is."""
    path = tmp_path / "odd.dng"
    write_dng(path, _picture(51, 77), orientation=6)
    assert decode_image(path).pixels.shape == (39, 26, 3)
    assert image_header(path) == (26, 39, 6)
    assert demosaic_size(77, 51) == (39, 26) and demosaic_size(100, 50, pixel_aspect=0.5) == (50, 50)
    assert demosaic_size(100, 50, pixel_aspect=2.0) == (100, 25) and demosaic_size(77, 51, mosaic=False) == (77, 51)


def test_a_jpeg_preview_is_decoded_and_a_damaged_one_refused():
    """Cameras' previews are JPEGs (Canon, Nikon): decoded by Pillow, its size from its header; bytes that do not
    decode are a RawError (the caller names the file)."""
    rgb = _picture()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95)
    thumb = rawpy.Thumbnail(rawpy.ThumbFormat.JPEG, buf.getvalue())
    assert preview_size(thumb) == (128, 96)
    assert np.array_equal(preview_pixels(thumb), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    with pytest.raises(RawError, match="embedded preview does not decode"):
        preview_pixels(rawpy.Thumbnail(rawpy.ThumbFormat.JPEG, buf.getvalue()[:600]))
    with pytest.raises(RawError, match="embedded preview is not an image"):
        preview_size(rawpy.Thumbnail(rawpy.ThumbFormat.JPEG, b"not a jpeg"))


def test_files_libraw_cannot_read_are_bad_images_naming_the_file(tmp_path):
    """A TIFF named .NEF (Pillow would have read it as the photo: helper-128), bytes that are no raw file (no raw
    format's signature), a
    truncated DNG without a preview and a missing file: each a BadImageError naming the file, which ``on_bad_image``
    handles like any unreadable image. A truncated DNG whose full-size preview is whole is read from it."""
    tiff = tmp_path / "DSC_0001.NEF"
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(tiff, "TIFF")
    junk = tmp_path / "IMG_0004.CR2"
    junk.write_bytes(b"\0" * 64)
    for read in (image_header, decode_image):
        with pytest.raises(BadImageError, match=r"DSC_0001\.NEF: LibRaw cannot read it as a camera raw file"):
            read(tiff)
        with pytest.raises(BadImageError, match=r"IMG_0004\.CR2: not a camera raw file: its first bytes are those of"):
            read(junk)
    whole = tmp_path / "whole.dng"
    write_dng(whole, _picture())
    truncated = tmp_path / "truncated.dng"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for read in (image_header, decode_image):
        with pytest.raises(BadImageError, match=r"truncated\.dng: LibRaw cannot read its raw data \(LibRawIOError"):
            read(truncated)
    # the same truncation with the camera's full-size preview before the raw data: the photo is the preview
    with_preview = tmp_path / "with_preview.dng"
    seen = write_dng(with_preview, _picture(), preview=_picture())
    cut = tmp_path / "cut.dng"
    cut.write_bytes(with_preview.read_bytes()[: with_preview.stat().st_size - 4000])
    assert np.array_equal(decode_image(cut).pixels, seen) and image_header(cut) == (128, 96, 1)
    with pytest.raises(BadImageError, match=r"missing\.dng: image not found"):
        image_header(tmp_path / "missing.dng")


def test_the_pixel_cap_applies_to_what_a_raw_file_gives(tmp_path):
    """``max_image_pixels`` is checked against the preview or the demosaic, before the demosaic is made."""
    path = tmp_path / "big.dng"
    write_dng(path, _picture())
    assert decode_image(path, max_pixels=64 * 48).pixels.shape == (48, 64, 3)
    for read in (image_header, decode_image):
        with pytest.raises(BadImageError, match=r"big\.dng: its demosaic is 64x48 = 3,072 pixels, over max_image_pix"):
            read(path, max_pixels=64 * 48 - 1)


@pytest.mark.parametrize(
    "layout, shape",
    [("xtrans", (65, 49, 3)), ("linear", (130, 97, 3)), ("mono", (130, 97, 3))],
)
def test_x_trans_linear_and_monochrome_raw_files_give_the_size_the_header_says(tmp_path, layout, shape):
    """Fujifilm's X-Trans mosaic is halved like a Bayer one; a linear DNG (Apple ProRAW: already demosaiced) and a
    monochrome sensor have no mosaic to halve, so LibRaw gives them at full size (a first version predicted half
    and refused every ProRAW), a monochrome one as gray RGB; each turned by its orientation, the header's size."""
    rgb = _picture(97, 130)
    path = tmp_path / f"{layout}.dng"
    write_dng(path, rgb, orientation=6, layout=layout)
    decoded = decode_image(path, "rgb").pixels
    assert decoded.shape == shape and image_header(path) == (shape[1], shape[0], 6)
    stored = transposed(decoded, 8)
    reference = rgb[::2, ::2] if layout == "xtrans" else rgb
    if layout == "mono":
        assert np.array_equal(decoded[:, :, 0], decoded[:, :, 2])
        assert _corr(stored[:, :, 0], reference[:, :, 1]) > 0.95
    else:
        assert _corr(stored, reference[: stored.shape[0], : stored.shape[1]]) > 0.9


def test_a_file_without_a_raw_signature_is_not_read_as_a_headerless_dump(tmp_path):
    """LibRaw takes a headerless file whose size is one it knows (307,200 bytes: a 640 x 480 dump of some camera) for
    that camera's raw data: random bytes named .raw decoded to 640 x 480 of noise, without a word (helper-131). Only
    files that start as a raw format read here are handed to LibRaw."""
    noise = tmp_path / "x.raw"
    noise.write_bytes(b"\x07" + np.random.default_rng(0).integers(0, 256, 307_199, dtype=np.uint8).tobytes())
    for read in (image_header, decode_image):
        with pytest.raises(BadImageError, match=r"x\.raw: not a camera raw file"):
            read(noise)
    heads = [b"II*\0", b"MM\0*", b"IIRO", b"IIU\0", b"IIII", b"FUJIFILMCCD-RAW ", b"II\x1a\0\0\0HEAPCCDR", b"FOVb"]
    assert all(has_raw_signature(h + bytes(16)) for h in heads)
    assert has_raw_signature(b"\0\0\0\x18ftypcrx " + bytes(8)) and not has_raw_signature(
        b"\0\0\0\x18ftypheic" + bytes(8)
    )
    assert not has_raw_signature(b"\xff\xd8\xff\xe0" + bytes(12))  # a JPEG named .CR2


def test_a_preview_over_the_pixel_cap_gives_way_to_the_demosaic_and_a_bomb_is_named(tmp_path):
    """A preview over ``max_image_pixels`` is passed over for the demosaic when that fits (a JPEG of the same size
    would be reduced while decoding); a JPEG preview whose header claims 30000 x 30000 (a damaged file) made Pillow
    raise its DecompressionBombError, which named no file and stopped the workflow's listing (helper-131): it is now
    a preview over the cap, read as the demosaic, or a RawError where Pillow's own check is on."""
    rgb = _picture()
    path = tmp_path / "capped.dng"
    seen = write_dng(path, rgb, preview=rgb)
    decoded = decode_image(path, max_pixels=96 * 128 - 1)
    assert decoded.pixels.shape == (48, 64, 3) and image_header(path, max_pixels=96 * 128 - 1) == (64, 48, 1)
    assert np.array_equal(decode_image(path, max_pixels=96 * 128).pixels, seen)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    jpeg = bytearray(buf.getvalue())
    sof = jpeg.index(b"\xff\xc0")  # baseline SOF0: length (2), precision (1), height (2), width (2)
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    bomb = rawpy.Thumbnail(rawpy.ThumbFormat.JPEG, bytes(jpeg))
    with pytest.raises(RawError, match="embedded preview is not an image \\(DecompressionBombError"):
        preview_size(bomb)
    with no_pillow_bomb_check():
        assert preview_size(bomb) == (30000, 30000)


def test_only_a_camera_jpeg_or_heif_pairs_with_a_raw_file_of_its_name(tmp_path, caplog):
    """RAW+JPEG (or RAW+HEIF) is what a camera writes: the raw file beside a JPEG or HEIF of its name, case aside
    (a Pixel's names up to their ``.RAW-``), is left out and named; beside a PNG of its name (an export, an edit)
    it is listed, as is a raw file alone."""
    jpg = tmp_path / "coll" / "jpg"
    jpg.mkdir(parents=True)
    rgb = _picture()
    pixel = "PXL_20231010_101112345"  # a Pixel's RAW+JPEG: the names differ after .RAW-
    for name in ("A.jpg", "C.png", "d.jpg", f"{pixel}.RAW-01.MP.COVER.jpg"):
        Image.fromarray(rgb).save(jpg / name)
    for name in ("A.NEF", "C.dng", "D.ARW", "E.dng", f"{pixel}.RAW-02.ORIGINAL.dng", "PXL_2.RAW-02.ORIGINAL.dng"):
        write_dng(jpg / name, rgb)
    with caplog.at_level("WARNING"):
        db = build_database_list(tmp_path / "coll", "coll")
    assert [e["name"] for e in db["db"]] == [
        "jpg/A.jpg",
        "jpg/C.dng",
        "jpg/C.png",
        "jpg/E.dng",
        "jpg/PXL_2.RAW-02.ORIGINAL.dng",
        f"jpg/{pixel}.RAW-01.MP.COVER.jpg",
        "jpg/d.jpg",
    ]
    said = [r.getMessage() for r in caplog.records if "camera raw file(s) left out" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(f"writes both of one photo): A.NEF, D.ARW, {pixel}.RAW-02.ORIGINAL.dng")
    assert {e["name"]: (e["width"], e["height"]) for e in db["db"]}["jpg/E.dng"] == (64, 48)


def test_the_demosaic_has_srgb_s_curve(tmp_path):
    """rawpy's default output curve is BT.709's (2.222, 4.5): 18% gray came out at 105, where sRGB (what the pixels
    are taken to be, and what a JPEG of the scene holds) puts it at 118 (helper-132)."""
    rgb = np.full((64, 96, 3), 118, np.uint8)  # sRGB's 18% gray
    rgb[:8] = 255  # white, for LibRaw's automatic brightness to keep white at white
    path = tmp_path / "gray.dng"
    write_dng(path, rgb)
    decoded = decode_image(path).pixels.astype(np.float64)
    assert np.abs(decoded[8:] - 118).max() <= 1 and decoded[:4].min() >= 254


def test_a_raw_file_libraw_turns_by_45_degrees_gets_its_rendered_size(tmp_path):
    """Fujifilm's SuperCCD (a DNG of CFALayout 2 here) is turned by 45 degrees by LibRaw, whose sizes then say a height
    one less than the width: the header's size is the rendering's, made for it (it was listed at the predicted half
    size and refused at extraction: helper-132)."""
    path = tmp_path / "superccd.dng"
    write_dng(path, _picture(), extra_tags=((50711, "H", 1, 2, True),))  # CFALayout: staggered, 45 degrees
    decoded = decode_image(path).pixels
    assert image_header(path)[:2] == (decoded.shape[1], decoded.shape[0]) and decoded.shape[:2] != (48, 64)


class _PreviewLibRawCannotGive:
    """A raw file as rawpy would have it opened, whose preview rawpy cannot give (HEVC in a CR3 shot in HEIF mode,
    JPEG XL: ``NotImplementedError('thumb type: 4')``), or gives uncompressed."""

    def __init__(self, error: BaseException | None = None, thumb=None):
        self.error, self.thumb = error, thumb

    def extract_thumb(self):
        if self.error is not None:
            raise self.error
        return self.thumb


def test_previews_other_than_jpeg_are_passed_over():
    """An HEVC or JPEG XL preview made rawpy raise NotImplementedError, which escaped the listing unnamed; an
    uncompressed one may come turned and brightened: both are passed over for the demosaic (helper-132)."""
    assert _thumb(_PreviewLibRawCannotGive(NotImplementedError("thumb type: 4"))) is None
    bitmap = rawpy.Thumbnail(rawpy.ThumbFormat.BITMAP, np.zeros((4, 4, 3), np.uint8))
    assert _thumb(_PreviewLibRawCannotGive(thumb=bitmap)) is None
    jpeg = rawpy.Thumbnail(rawpy.ThumbFormat.JPEG, b"\xff\xd8")
    assert _thumb(_PreviewLibRawCannotGive(thumb=jpeg)) is jpeg

"""Bad image files get an error that names them (OpenCV alone would pad a truncated JPEG silently)."""

import io
import json
import struct
import zlib

import cv2
import h5py
import numpy as np
import pillow_heif
import pytest
from PIL import Image

from retrieval.data.datasets import build_image_lists, database_of_folder
from retrieval.data.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    BadImageError,
    DecodedImage,
    decode_image,
    image_header,
    load_bgr,
    load_gray,
    load_rgb,
)
from retrieval.features.reduced import extract_reduced
from retrieval.stages.extract import _store_name, extract_local_chunk


def _jpeg_bytes():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, content, why",
    [
        ("truncated.jpg", _jpeg_bytes()[:300], "cannot decode image"),
        ("empty.jpg", b"", r"empty file \(0 bytes\)"),
        # said without the file object Pillow names (<_io.BufferedReader name=...>, a new user's trial)
        (
            "notes.jpg",
            b"this is text, not an image",
            r"cannot decode image \(UnidentifiedImageError: not an image, or a format",
        ),
        ("missing.jpg", None, "image not found"),
    ],
)
def test_bad_images_are_named(tmp_path, name, content, why):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    for read in (load_gray, image_header):
        with pytest.raises(BadImageError, match=rf"{name}: {why}"):
            read(p)


def test_a_corrupt_exif_block_is_logged_with_the_file_name(tmp_path, caplog):
    """Pillow warns "Corrupt EXIF data" without naming a file; the warning is logged with the photo's path, and the
    orientation the block still holds is applied."""
    ifd = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x05" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
    p = tmp_path / "phone.jpg"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(
        p, exif=b"Exif\x00\x00" + ifd + b"\xff" * 10
    )  # 5 entries, 1 whole
    with caplog.at_level("WARNING"):
        assert image_header(p) == (20, 30, 6)
        assert load_rgb(p).shape == (30, 20, 3)
    assert caplog.text.count(f"{p}: Corrupt EXIF data") == 2


def test_good_image_decodes_to_gray(tmp_path):
    p = tmp_path / "ok.jpg"
    p.write_bytes(_jpeg_bytes())
    g = load_gray(p)
    assert g.shape == (64, 80) and g.dtype == np.uint8


# ---------------------------------------------------------------------------------------------------------------
# Decoding shows what a viewer sees (issue 14, item 1): every kind of file against its upright 8-bit original.


def _original(h=48, w=64):
    """An upright 8-bit RGB photo stand-in: smooth gradients plus texture, no symmetry (every flip is visible)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([4 * xx, 5 * yy, 2 * xx + 3 * yy], axis=2) % 256
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """What a camera stores for ``upright`` with EXIF ``orientation``, from the EXIF 2.3 definitions of the tag (row 0
    and column 0 of the stored image are the displayed image's ...): written with numpy, not with Pillow's table."""
    return {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # top-right: mirrored left-right
        3: lambda a: a[::-1, ::-1],  # bottom-right: rotated 180
        4: lambda a: a[::-1],  # bottom-left: mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # left-top: transposed
        6: lambda a: np.rot90(a, 1),  # right-top: the viewer rotates 90 clockwise
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # right-bottom: transverse
        8: lambda a: np.rot90(a, -1),  # left-bottom: the viewer rotates 90 counter-clockwise
    }[orientation](upright)


def _save_with_orientation(path, pixels, orientation, **kw):
    im = Image.fromarray(np.ascontiguousarray(pixels))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, **kw)


def _gray(rgb):
    return np.asarray(Image.fromarray(rgb).convert("L"))


# how each format is written with its orientation: PNG's eXIf chunk, WebP's EXIF chunk, a TIFF's own tag 274
# (uncompressed: Pillow's decoder; LZW: libtiff's). Pillow's TIFF reader applies the tag itself while loading (and
# reports the displayed size at open): applied again, the picture was turned twice (a new user's trial).
ORIENTED_FORMATS = {
    "png": {},
    "webp": {"lossless": True},
    "tif": {},
    "lzw.tif": {"compression": "tiff_lzw"},
}


@pytest.mark.parametrize("fmt", ORIENTED_FORMATS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_before_anything(tmp_path, orientation, fmt):
    up = _original()
    p = tmp_path / f"o{orientation}.{fmt}"
    _save_with_orientation(p, _stored_for(up, orientation), orientation, **ORIENTED_FORMATS[fmt])
    assert image_header(p)[:2] == (up.shape[1], up.shape[0])  # the displayed size
    d = decode_image(p, "rgb")
    np.testing.assert_array_equal(d.pixels, up)
    assert (d.width, d.height) == (up.shape[1], up.shape[0])
    np.testing.assert_array_equal(load_gray(p), _gray(up))
    np.testing.assert_array_equal(load_bgr(p), up[:, :, ::-1])


def test_exif_orientation_of_a_camera_jpeg(tmp_path):
    up = _original(96, 128)
    p = tmp_path / "camera.jpg"
    _save_with_orientation(p, _stored_for(up, 6), 6, quality=98, subsampling=0)
    rgb = load_rgb(p).astype(int)
    assert rgb.shape == up.shape
    err = np.abs(rgb - up).mean()
    assert err < 5  # JPEG noise only
    assert np.abs(np.rot90(rgb, 2) - up).mean() > 10 * err  # the wrong way up is far off


def test_avif_jfif_jpe_and_hif_files_are_listed_and_read_upright(tmp_path):
    """AV1 stills (Pillow's AVIF reader, EXIF orientation 6 as Pillow writes it), JPEGs named .jfif / .JPE and a
    camera's HEIF named .HIF are images of a scanned folder, decoded as displayed."""
    upright = _original()
    (tmp_path / "jpg").mkdir()
    _save_with_orientation(tmp_path / "jpg" / "turned.avif", _stored_for(upright, 6), 6, quality=100)
    Image.fromarray(upright).save(tmp_path / "jpg" / "saved.jfif", "JPEG", quality=100)
    Image.fromarray(upright).save(tmp_path / "jpg" / "OLD.JPE", "JPEG", quality=100)
    pillow_heif.from_pillow(Image.fromarray(upright)).save(tmp_path / "jpg" / "DSCF0001.HIF", quality=95)
    listed = database_of_folder(tmp_path)
    assert sorted(p.name for p in listed) == ["DSCF0001.HIF", "OLD.JPE", "saved.jfif", "turned.avif"]
    for p in listed:
        assert image_header(p)[:2] == (upright.shape[1], upright.shape[0])
        assert np.abs(load_rgb(p).astype(int) - upright).mean() < 15  # lossy 4:2:0 (7.3); mirrored 68, turned 112


@pytest.mark.parametrize("suffix", ["heic", "avif"])
def test_a_truncated_heif_or_avif_is_said_to_be_one(tmp_path, suffix):
    """A HEIC or AVIF cut short before its boxes can be read: named as a damaged HEIF/AVIF file, with libheif's
    reason for a HEIC, not as "not an image, or a format Pillow cannot read" (which suggested the format was not
    supported: helper-127)."""
    p = tmp_path / f"IMG_0001.{suffix}"
    Image.fromarray(_original()).save(p, quality=90)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(BadImageError) as e:
        image_header(p)
    message = str(e.value)
    assert message.startswith(f"{p}: cannot decode image (a HEIF/AVIF file (brand ")
    assert "damaged or truncated" in message and "UnidentifiedImageError" not in message
    if suffix == "heic":
        assert "meta" in message  # libheif: No 'meta' box


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_heic_as_an_iphone_writes_it_is_rotated_once(tmp_path, orientation):
    """HEIC through pillow-heif: the file holds the stored pixels, the rotation as HEIF's irot property and the EXIF
    orientation tag too (as iPhones write it). libheif applies irot; EXIF orientation must not be applied again."""
    up = _original(96, 128)
    p = tmp_path / f"IMG_{orientation}.HEIC"
    exif = Image.Exif()
    exif[0x0112] = orientation
    # pillow-heif writes the orientation of EXIF bytes as irot / imir and keeps the tag (an Exif object: the tag only)
    Image.fromarray(np.ascontiguousarray(_stored_for(up, orientation))).save(
        p, exif=exif.tobytes(), quality=-1, chroma=444
    )
    stored = Image.Exif()
    stored.load(pillow_heif.open_heif(p).info["exif"])
    assert stored[0x0112] == orientation  # the tag is in the file, as a camera's
    assert image_header(p)[:2] == (up.shape[1], up.shape[0])  # the displayed size
    rgb = load_rgb(p).astype(int)
    assert rgb.shape == up.shape
    err = np.abs(rgb - up).mean()
    assert err < 6  # HEVC noise only
    assert np.abs(np.rot90(rgb, 2) - up).mean() > 5 * err  # the wrong way up is far off
    lists, _ = build_image_lists(tmp_path, "phone")  # listed as an image, with its displayed size
    assert [(e["name"], e["width"], e["height"]) for e in lists["db"]] == [(p.name, 128, 96)]


def _noisy16(u8, rng):
    """16-bit values that round to ``u8`` under v / 257 but not under Pillow's v >> 8 (its high byte)."""
    return (u8.astype(np.int64) * 257 + rng.integers(-128, 129, u8.shape)).clip(0, 65535).astype(np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_is_scaled_not_clamped(tmp_path, suffix):
    g8 = _gray(_original())
    g16 = _noisy16(g8, np.random.default_rng(2))
    p = tmp_path / f"g16{suffix}"
    assert cv2.imwrite(str(p), g16)
    assert Image.open(p).mode.startswith("I;16")
    np.testing.assert_array_equal(load_gray(p), g8)
    np.testing.assert_array_equal(load_rgb(p), np.repeat(g8[:, :, None], 3, 2))


def test_32bit_integer_gray_is_read_as_16bit(tmp_path):
    g8 = _gray(_original())
    p = tmp_path / "i32.tif"
    Image.fromarray((g8.astype(np.int32) * 257)).save(p)
    assert Image.open(p).mode == "I"
    np.testing.assert_array_equal(load_gray(p), g8)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_is_scaled_by_257(tmp_path, suffix):
    up = _original()
    rng = np.random.default_rng(3)
    p = tmp_path / f"rgb16{suffix}"
    assert cv2.imwrite(str(p), _noisy16(up, rng)[:, :, ::-1])
    np.testing.assert_array_equal(load_rgb(p), up)
    np.testing.assert_array_equal(load_gray(p), _gray(up))
    # with an alpha channel (opaque here) and an EXIF orientation
    q = tmp_path / f"rgba16{suffix}"
    stored = _stored_for(up, 8)
    rgba = np.dstack([_noisy16(stored, rng), np.full(stored.shape[:2], 65535, np.uint16)])
    assert cv2.imwrite(str(q), np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]]))
    if suffix == ".png":  # Pillow cannot write 16-bit colour: the tag goes into OpenCV's file
        _add_png_exif(q, 8)
        np.testing.assert_array_equal(load_rgb(q), up)


def _tiff_16bit_rgb(path, rgb16, orientation):
    """A baseline little-endian TIFF of 16-bit RGB ``rgb16`` (H, W, 3) uint16 with tag 274 (Orientation): Pillow
    cannot write 16-bit colour and OpenCV writes no orientation, so the file is laid out here (TIFF 6.0, one strip)."""
    h, w, _ = rgb16.shape
    data = rgb16.astype("<u2").tobytes()
    ifd_at = 8 + len(data)
    n = 11
    bits_at = ifd_at + 2 + 12 * n + 4

    def entry(tag, typ, value, count=1):
        packed = struct.pack("<H2x", value) if typ == 3 else struct.pack("<I", value)
        return struct.pack("<HHI", tag, typ, count) + packed

    entries = [
        entry(256, 4, w),
        entry(257, 4, h),
        entry(258, 4, bits_at, 3)[:4] + struct.pack("<HI", 3, bits_at)[2:],  # 3 SHORTs at an offset
        entry(259, 3, 1),  # no compression
        entry(262, 3, 2),  # RGB
        entry(273, 4, 8),  # the strip right after the header
        entry(274, 3, orientation),
        entry(277, 3, 3),
        entry(278, 4, h),
        entry(279, 4, len(data)),
        entry(284, 3, 1),  # chunky
    ]
    entries[2] = struct.pack("<HHII", 258, 3, 3, bits_at)
    ifd = struct.pack("<H", n) + b"".join(entries) + struct.pack("<I", 0)
    path.write_bytes(b"II" + struct.pack("<HI", 42, ifd_at) + data + ifd + struct.pack("<3H", 16, 16, 16))


@pytest.mark.parametrize("orientation", [3, 6])
def test_16bit_rgb_tiff_with_an_orientation_tag_is_turned_once(tmp_path, orientation):
    """The 16-bit colour path reads pixels with OpenCV (whose imdecode turns a TIFF by its tag, as Pillow's TIFF
    reader does, which also reports the displayed size): the orientation is applied once."""
    up = _original()
    p = tmp_path / f"rgb16_o{orientation}.tif"
    _tiff_16bit_rgb(p, _noisy16(_stored_for(up, orientation), np.random.default_rng(4)), orientation)
    assert Image.open(p).getexif().get(0x0112) == orientation
    assert image_header(p) == (up.shape[1], up.shape[0], orientation)
    np.testing.assert_array_equal(load_rgb(p), up)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGBA"])
@pytest.mark.parametrize("orientation", [3, 6])
def test_an_uncompressed_tiff_of_any_mode_is_turned_once(tmp_path, mode, orientation):
    """Given a path, Pillow memory-maps an uncompressed TIFF by its displayed size: an L, RGBA or I;16 TIFF of
    orientation 5-8 came out scrambled (and was then refused by the size check); read from a file object."""
    up = _original()
    if mode == "L":
        up, want = _gray(up), _gray(up)
    elif mode == "I;16":
        g8 = _gray(up)
        up, want = g8.astype(np.uint16) * 257, g8
    else:
        up = np.dstack([up, np.full(up.shape[:2], 255, np.uint8)])
        want = up[:, :, :3]
    p = tmp_path / f"{mode.replace(';', '')}_o{orientation}.tif"
    _save_with_orientation(p, _stored_for(up, orientation), orientation)
    with Image.open(p) as im:
        assert im.mode == mode and im.info.get("compression", "raw") == "raw"
    assert image_header(p) == (want.shape[1], want.shape[0], orientation)
    got = load_gray(p) if want.ndim == 2 else load_rgb(p)
    np.testing.assert_array_equal(got, want)


def test_a_camera_jpeg_with_an_embedded_preview_gives_no_pages_warning(tmp_path, caplog):
    """Cameras write JPEGs with a preview image (MPF): Pillow opens them as MPO with 2 frames; that is not a
    multi-page file worth a warning on every decode."""
    up = _original()
    p = tmp_path / "camera.jpg"
    Image.fromarray(up).save(p, "MPO", save_all=True, append_images=[Image.fromarray(up[::2, ::2])], quality=98)
    with Image.open(p) as im:
        assert im.format == "MPO" and im.n_frames == 2
    with caplog.at_level("WARNING"):
        assert load_rgb(p).shape == up.shape
    assert "pages" not in caplog.text


def test_a_16bit_png_with_a_transparent_colour_keeps_its_orientation(tmp_path):
    """A tRNS colour: OpenCV makes it transparent (composited on white) where Pillow keeps it, so the two decodes
    differ there; the orientation is still the closer match (it was refused as different pictures)."""
    up = _original()
    stored = _stored_for(up, 6)
    p = tmp_path / "trns16.png"
    assert cv2.imwrite(str(p), (stored.astype(np.uint16) * 257)[:, :, ::-1])
    key = stored[0, 0]
    trns = struct.pack(">3H", *(int(v) * 257 for v in key))
    chunk = struct.pack(">I", 6) + b"tRNS" + trns + struct.pack(">I", zlib.crc32(b"tRNS" + trns) & 0xFFFFFFFF)
    data = p.read_bytes()
    i = data.index(b"IDAT") - 4
    p.write_bytes(data[:i] + chunk + data[i:])
    _add_png_exif(p, 6)
    got = load_rgb(p)
    want = up.copy()
    want[(up == key).all(axis=2)] = 255  # the transparent colour on white
    np.testing.assert_array_equal(got, want)


def test_a_multi_page_tiff_is_read_at_its_first_page_with_a_warning(tmp_path, caplog):
    up = _original()
    p = tmp_path / "scan.tif"
    Image.fromarray(up).save(p, save_all=True, append_images=[Image.fromarray(255 - up)])
    with caplog.at_level("WARNING"):
        np.testing.assert_array_equal(load_rgb(p), up)
    assert f"{p}: 2 pages (frames); the first is read" in caplog.text


def _add_png_exif(path, orientation):
    """Insert an eXIf chunk (the tag only) before IDAT of an existing PNG."""

    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload) & 0xFFFFFFFF)
    data = path.read_bytes()
    i = data.index(b"IDAT") - 4
    path.write_bytes(data[:i] + chunk + data[i:])


def test_float_image_maps_0_1_to_0_255(tmp_path):
    g8 = _gray(_original())
    p = tmp_path / "f.tif"
    Image.fromarray((g8 / 255.0).astype(np.float32)).save(p)
    assert Image.open(p).mode == "F"
    np.testing.assert_array_equal(load_gray(p), g8)


def test_cmyk_jpeg_decodes_to_its_rgb(tmp_path):
    up = _original(96, 128)
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(up).convert("CMYK").save(p, quality=98, subsampling=0)
    assert Image.open(p).mode == "CMYK"
    assert np.abs(load_rgb(p).astype(int) - up).mean() < 3


def test_palette_with_transparency_and_alpha_are_composited_on_white(tmp_path):
    up = _original()
    pal = Image.fromarray(up).quantize(64, dither=Image.Dither.NONE)
    expected = np.asarray(pal.convert("RGB")).copy()
    p = tmp_path / "palette.png"
    pal.save(p)
    np.testing.assert_array_equal(load_rgb(p), expected)
    # one palette entry transparent: those pixels show the white page
    idx = np.asarray(pal)
    t = int(idx[0, 0])
    pal.info["transparency"] = t
    q = tmp_path / "palette_t.png"
    pal.save(q, transparency=t)
    expected_t = expected.copy()
    expected_t[idx == t] = 255
    np.testing.assert_array_equal(load_rgb(q), expected_t)
    # RGBA with half alpha, and LA
    rgba = np.dstack([up, np.full(up.shape[:2], 128, np.uint8)])
    r = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(r)
    blend = np.clip(np.rint(up * (128 / 255) + 255 * (1 - 128 / 255)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(load_rgb(r), blend)
    g = _gray(up)
    la = tmp_path / "la.png"
    Image.fromarray(np.dstack([g, np.full(g.shape, 255, np.uint8)]), "LA").save(la)
    np.testing.assert_array_equal(load_gray(la), g)
    # a transparent colour of an 8-bit RGB or gray PNG (tRNS), as its 16-bit twin is read (OpenCV composites it)
    rgb_t, gray_t = tmp_path / "rgb_t.png", tmp_path / "gray_t.png"
    Image.fromarray(up).save(rgb_t, transparency=tuple(int(v) for v in up[0, 0]))
    hit = (up == up[0, 0]).all(axis=2)
    want = up.copy()
    want[hit] = 255
    np.testing.assert_array_equal(load_rgb(rgb_t), want)
    Image.fromarray(g).save(gray_t, transparency=int(g[0, 0]))
    want_g = g.copy()
    want_g[g == g[0, 0]] = 255
    np.testing.assert_array_equal(load_gray(gray_t), want_g)


def _gray_png(path, rows, bit_depth, trns):
    """A gray PNG (colour type 0) of ``bit_depth`` 1, 2, 4, 8 or 16 with a tRNS gray sample, written by hand (Pillow
    writes no 2- or 4-bit gray)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b""
    for r in rows:
        if bit_depth < 8:
            bits = "".join(format(v, f"0{bit_depth}b") for v in r)
            bits += "0" * (-len(bits) % 8)
            raw += b"\0" + int(bits, 2).to_bytes(len(bits) // 8, "big")
        else:
            raw += b"\0" + b"".join(struct.pack(">H" if bit_depth == 16 else ">B", v) for v in r)
    head = struct.pack(">IIBBBBB", len(rows[0]), len(rows), bit_depth, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"tRNS", struct.pack(">H", trns))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "bit_depth, samples, trns, want",
    [
        (1, [0, 1, 1, 0], 1, [0, 255, 255, 0]),  # the level is white already: nothing to tell apart
        (1, [0, 1, 1, 0], 0, [255, 255, 255, 255]),
        (2, [0, 1, 2, 3], 1, [0, 255, 170, 255]),  # Pillow keeps the sample 1 and stretches the pixel to 85
        (4, [0, 5, 10, 15], 5, [0, 255, 170, 255]),
        (8, [0, 7, 100, 200], 7, [0, 255, 100, 200]),
        (16, [0, 4096, 32768, 51400], 4096, [0, 255, 128, 200]),
    ],
)
def test_a_gray_pngs_transparent_level_is_white_at_every_bit_depth(tmp_path, bit_depth, samples, trns, want):
    p = tmp_path / f"gray{bit_depth}.png"
    _gray_png(p, [samples, samples[::-1]], bit_depth, trns)
    got = load_gray(p)
    assert got[0].tolist() == want and got[1].tolist() == want[::-1]


def test_over_the_pixel_cap_jpeg_is_reduced_other_formats_refused(tmp_path):
    up = _original(96, 128)
    jpg, png = tmp_path / "big.jpg", tmp_path / "big.png"
    _save_with_orientation(jpg, _stored_for(up, 6), 6, quality=98)
    Image.fromarray(up).save(png)
    cap = 96 * 128 // 3  # forces a reduction by 2 (1/4 of the pixels fits)
    d = decode_image(jpg, "rgb", max_pixels=cap)
    assert (d.width, d.height) == (128, 96) and d.pixels.shape == (48, 64, 3) and d.factor == (0.5, 0.5)
    small = np.asarray(Image.fromarray(up).resize((64, 48), Image.Resampling.BOX))
    assert np.abs(d.pixels.astype(int) - small).mean() < 4  # DCT-domain reduction of the upright photo
    assert image_header(jpg, max_pixels=cap)[:2] == (128, 96)
    with pytest.raises(BadImageError, match=r"big\.png: .*over max_image_pixels"):
        load_gray(png, max_pixels=cap)
    with pytest.raises(BadImageError, match=r"big\.png: "):
        image_header(png, max_pixels=cap)
    with pytest.raises(BadImageError, match=r"big\.jpg: .*even at 1/8"):
        load_gray(jpg, max_pixels=10)
    assert DEFAULT_MAX_IMAGE_PIXELS == 2 * Image.MAX_IMAGE_PIXELS  # Pillow's refusal limit
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own setting is restored after each decode


@pytest.mark.parametrize("w, h, cap", [(1001, 1001, 251_001), (1003, 999, 300_000), (999, 1003, 251_000)])
def test_an_odd_sized_jpeg_over_the_cap_is_reduced_by_the_planned_factor(tmp_path, w, h, cap):
    """Pillow's draft scale is min(w // rw, h // rh): asking for ceil sizes got no reduction for odd sizes (1001 // 501
    = 1), a full decode over the cap. The pixels are the planned ceil(w / 2) x ceil(h / 2) and fit the cap."""
    p = tmp_path / "odd.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
    d = decode_image(p, "gray", max_pixels=cap)
    assert d.pixels.shape == (-(-h // 2), -(-w // 2)) and d.pixels.size <= cap
    assert (d.width, d.height) == (w, h) and d.scale == 2 and d.factor == (0.5, 0.5)


def test_a_thin_jpeg_over_the_cap_is_reduced_as_pillow_can_or_refused_at_listing(tmp_path):
    """Pillow's JPEG draft cannot reduce by more than the thin side: a 5 x 20000 JPEG is reduced by 4 when 8 is asked.
    The cap check plans the scale Pillow applies, so the header accepts exactly what decoding then gives, and refuses
    at listing time what no scale brings under the cap (it used to be accepted, then refused by the extraction)."""
    p = tmp_path / "strip.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20000, 5), dtype=np.uint8)).save(p)
    d = decode_image(p, "gray", max_pixels=20_000)
    assert d.pixels.shape == (5000, 2) and d.scale == 4
    assert image_header(p, max_pixels=20_000)[:2] == (5, 20000)
    with pytest.raises(
        BadImageError, match=r"strip\.jpg: 5x20000 = 100,000 pixels is over max_image_pixels = 5,000 even at 1/4"
    ) as e:
        image_header(p, max_pixels=5_000)
    # the way out besides skipping the photo: the cap is a setting (helper-121's trial was told only to remove it)
    assert str(e.value).endswith(
        "; raise max_image_pixels (--config max_image_pixels=N) if the memory allows, or reduce the image"
    )


def test_reduced_keypoints_map_back_to_full_image_pixel_centres():
    """Reduced pixel i is made from full-image pixels [i * s, (i + 1) * s): its centre is (i + 0.5) * s - 0.5, so the
    first and last reduced pixels of a 1001-pixel-wide image reduced by 2 map to 0.5 and 1000.5, inside it (the old
    factor, width / ceil(width / s), mapped the last to 998.0, its box and scale are mapped by 1 / s)."""
    decoded = DecodedImage(np.zeros((300, 501), np.uint8), 1001, 600, 2)
    seen = {}

    def run(pixels, entry, box):
        seen["box"] = box
        row = {"xy": np.array([[0, 0], [500, 299]], np.float32), "scale": np.array([1.6, 3.2], np.float32)}
        return row, "global"

    row, g = extract_reduced(run, decoded, {"path": "p.jpg"}, [100, 40, 901, 560], "sift")
    np.testing.assert_allclose(row["xy"], [[0.5, 0.5], [1000.0, 598.5]])  # 1000.5 is beyond the last pixel, 1000
    np.testing.assert_allclose(row["scale"], [3.2, 6.4])
    assert seen["box"] == [50, 20, 450, 280] and g == "global" and row["image_size"].tolist() == [1001, 600]
    # a deep backbone's positions are continuous (a patch centre at 14 j + 7): scaled by s alone
    row, _ = extract_reduced(run, decoded, {"path": "p.jpg"}, None, "dinov2")
    np.testing.assert_allclose(row["xy"], [[0, 0], [1000, 598]])


def test_a_camera_jpeg_with_a_preview_over_the_cap_is_reduced_like_a_jpeg(tmp_path):
    """Pillow reports a camera JPEG with an embedded preview as MPO; it is decoded by libjpeg and reduced while
    decoding as any JPEG is, not refused."""
    up = _original(96, 128)
    p = tmp_path / "camera.jpg"
    Image.fromarray(up).save(p, "MPO", save_all=True, append_images=[Image.fromarray(up[::2, ::2])], quality=98)
    cap = 96 * 128 // 3
    d = decode_image(p, "rgb", max_pixels=cap)
    assert d.pixels.shape == (48, 64, 3) and d.factor == (0.5, 0.5)
    small = np.asarray(Image.fromarray(up).resize((64, 48), Image.Resampling.BOX))
    assert np.abs(d.pixels.astype(int) - small).mean() < 4
    assert image_header(p, max_pixels=cap) == (128, 96, 1)
    with pytest.raises(TypeError):  # a caller's mistake is not a bad image (the decode errors are kept narrow)
        decode_image(p, max_pixels=None)
    with pytest.raises(BadImageError, match=r"camera\.jpg: .*even at 1/8"):
        decode_image(p, max_pixels=10)


def _tiff_with_a_damaged_next_page(path, pixels):
    """A TIFF whose next-page offset points at an IFD holding only an orientation tag, 6 (no dimensions): Pillow
    opens it and reads its first page, but counting its pages raises TypeError ("Missing dimensions") after it has
    read the damaged page's tags."""
    Image.fromarray(pixels).save(path)
    b = bytearray(path.read_bytes())
    ifd0 = struct.unpack("<I", b[4:8])[0]
    next_offset = ifd0 + 2 + 12 * struct.unpack("<H", b[ifd0 : ifd0 + 2])[0]
    b[next_offset : next_offset + 4] = struct.pack("<I", len(b))
    b += struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<I", 0)
    path.write_bytes(bytes(b))


def _set_tiff_tag(path, page, tag, kind=None, value=None):
    """Overwrite the field type and/or the (short) value of ``tag`` in IFD ``page`` of a little-endian TIFF."""
    b = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", b[4:8])[0]
    for _ in range(page):
        n = struct.unpack("<H", b[ifd : ifd + 2])[0]
        ifd = struct.unpack("<I", b[ifd + 2 + 12 * n : ifd + 6 + 12 * n])[0]
    for i in range(struct.unpack("<H", b[ifd : ifd + 2])[0]):
        e = ifd + 2 + 12 * i
        if struct.unpack("<H", b[e : e + 2])[0] == tag:
            if kind is not None:
                b[e + 2 : e + 4] = struct.pack("<H", kind)
            if value is not None:
                b[e + 8 : e + 10] = struct.pack("<H", value)
    path.write_bytes(bytes(b))


def test_a_tiff_with_damaged_tags_is_a_named_bad_image_or_read_at_its_first_page(tmp_path, caplog):
    """Pillow raises TypeError and KeyError, not OSError, for damaged TIFF tags: a first page whose StripOffsets has
    another type is a BadImageError naming the file (honoured by on_bad_image); a second page whose Compression is
    unknown (KeyError while counting pages) leaves the first page read, with a warning naming the file."""
    pages = [np.full((20, 30, 3), v, np.uint8) for v in (60, 180)]
    offsets, compression = tmp_path / "offsets.tif", tmp_path / "compression.tif"
    for p in (offsets, compression):
        Image.fromarray(pages[0]).save(p, save_all=True, append_images=[Image.fromarray(pages[1])])
    _set_tiff_tag(offsets, 0, 0x111, kind=5)  # StripOffsets as RATIONAL
    _set_tiff_tag(compression, 1, 0x103, value=12345)
    with pytest.raises(BadImageError, match=r"offsets\.tif: cannot decode image \(TypeError: "):
        load_rgb(offsets)
    with caplog.at_level("WARNING"):
        np.testing.assert_array_equal(load_rgb(compression), pages[0])
    assert f"{compression}: the number of pages cannot be read (KeyError: 12345)" in caplog.text


def test_damaged_tiff_and_heic_files_are_named_not_crashed_on(tmp_path, caplog):
    """Decoding errors Pillow and pillow-heif raise outside OSError / ValueError: a TIFF with a damaged next page
    (TypeError while counting pages) is read at its first page, upright (not turned by the damaged page's
    orientation), with a warning naming it; a HEIC whose image size
    box is damaged (libheif's RuntimeError) is a BadImageError naming the file, in one line, which extraction
    honours under on_bad_image (skip: an empty row)."""
    px = _original(40, 50)
    tif = tmp_path / "scan.tif"
    _tiff_with_a_damaged_next_page(tif, px)
    with pytest.raises(TypeError):
        with Image.open(tif) as im:
            im.n_frames
    with caplog.at_level("WARNING"):
        np.testing.assert_array_equal(load_rgb(tif), px)
        assert image_header(tif) == (50, 40, 1)
    assert f"{tif}: the number of pages cannot be read (TypeError: Missing dimensions)" in caplog.text

    heic = tmp_path / "phone.heic"
    pillow_heif.from_pillow(Image.fromarray(px)).save(heic, quality=90)
    b = bytearray(heic.read_bytes())
    i = b.find(b"ispe")
    b[i + 8 : i + 12] = struct.pack(">I", 0x5C000040)  # an absurd width
    heic.write_bytes(bytes(b))
    with pytest.raises(BadImageError, match=r"phone\.heic: cannot decode image \(RuntimeError: [^\n]*$") as e:
        load_rgb(heic)
    assert "\n" not in str(e.value)
    lists = {"dataset": "mine", "root": str(tmp_path), "db": [{"name": "phone.heic", "path": str(heic)}]}
    lp = tmp_path / "lists.json"
    lp.write_text(json.dumps(lists))
    with pytest.raises(ValueError, match=r"phone\.heic"):
        extract_local_chunk(lp, "db", 0, 1, tmp_path / "f.h5", "sift", {"k": 16}, "v")
    extract_local_chunk(lp, "db", 0, 1, tmp_path / "f.h5", "sift", {"k": 16}, "v", on_bad_image="skip")
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert int(f["count"][0]) == 0


def test_a_decompression_bomb_is_named_and_skipped_in_the_image_lists(tmp_path, monkeypatch):
    """Pillow's DecompressionBombError is not an OSError: it used to stop image_lists without naming the file."""
    root = tmp_path / "ds"
    (root / "jpg").mkdir(parents=True)
    up = _original()
    for n in ("a", "b"):
        Image.fromarray(up).save(root / "jpg" / f"{n}.jpg")
    Image.fromarray(up).save(root / "jpg" / "bomb.png")
    cap = up.shape[0] * up.shape[1] - 1
    with pytest.raises(ValueError, match=r"bomb\.png: .*over max_image_pixels"):
        build_image_lists(root, "ds", max_pixels=cap)
    lists, _ = build_image_lists(root, "ds", on_bad_image="skip", max_pixels=cap)
    assert [s["name"] for s in lists["skipped"] if s["split"] == "db"] == ["jpg/bomb.png"]
    assert [(e["width"], e["height"]) for e in lists["db"]] == [(64, 48), (64, 48), (0, 0)]
    # Pillow's own limit is not what stops it: lowered below the images, ours still decides
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    lists, _ = build_image_lists(root, "ds", on_bad_image="skip")
    assert lists["skipped"] == [] and load_gray(root / "jpg" / "bomb.png").shape == (48, 64)


def test_image_lists_hold_displayed_sizes_and_boxes(tmp_path):
    """A query stored landscape with orientation 6: its size and box are the portrait picture's."""

    root = tmp_path / "ds"
    (root / "jpg").mkdir(parents=True)
    up = _original(64, 48)  # portrait as displayed
    _save_with_orientation(root / "jpg" / "q.png", _stored_for(up, 6), 6)
    Image.fromarray(up).save(root / "jpg" / "d.png")
    gnd = {
        "imlist": ["d.png"],
        "qimlist": ["q.png"],
        "gnd": [{"easy": [0], "hard": [], "junk": [], "bbx": [5, 40, 30, 60]}],
    }
    (root / "gnd.json").write_text(json.dumps(gnd))
    lists, _ = build_image_lists(root, "ds")
    q = lists["query"][0]
    assert (q["width"], q["height"]) == (48, 64) and q["crop"] == [5, 40, 30, 60]  # inside the portrait, not clamped


def _photo(h, w):
    from skimage import data  # noqa: PLC0415

    return np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.LANCZOS))


def test_query_with_exif_orientation_is_cropped_where_the_viewer_drew_its_box(tmp_path):
    """Image lists then extraction, as the rules run them: a query stored landscape with orientation 6 and a box drawn
    on the portrait picture gives exactly the features of an upright copy with the same box."""

    root = tmp_path / "ds"
    (root / "jpg").mkdir(parents=True)
    up = _photo(240, 180)  # portrait as displayed
    _save_with_orientation(root / "jpg" / "rotated.png", _stored_for(up, 6), 6)
    Image.fromarray(up).save(root / "jpg" / "upright.png")
    Image.fromarray(_photo(120, 160)).save(root / "jpg" / "db.png")
    box = [20.0, 110.0, 170.0, 235.0]  # lower part of the portrait: outside a 240x180 landscape's height
    g = {"easy": [0], "hard": [], "junk": [], "bbx": box}
    (root / "gnd.json").write_text(
        json.dumps({"imlist": ["db.png"], "qimlist": ["rotated.png", "upright.png"], "gnd": [g, g]})
    )
    lists, _ = build_image_lists(root, "ds")
    assert [q["crop"] for q in lists["query"]] == [[20, 110, 170, 235]] * 2
    lp = tmp_path / "lists.json"
    lp.write_text(json.dumps(lists))
    cfg = {"k": 200, "max_side": 1024, "contrast_threshold": 0.02, "edge_threshold": 10.0, "scale": 1.0}
    extract_local_chunk(lp, "query", 0, 1, tmp_path / "q.h5", "sift", cfg, "test")
    with h5py.File(tmp_path / "q.h5", "r") as f:
        count, desc, xy, size = f["count"][:], f["descriptors"][:], f["xy"][:], f["image_size"][:]
    assert count[0] == count[1] > 20
    np.testing.assert_array_equal(desc[0], desc[1])
    np.testing.assert_array_equal(xy[0], xy[1])
    assert (size == [180, 240]).all()
    assert (xy[0, : count[0], 1] >= 110).all() and (
        xy[0, : count[0], 1] <= 235
    ).all()  # inside the box, full-image pixels


def test_a_reduced_jpeg_keeps_full_image_coordinates(tmp_path):
    """A JPEG over max_image_pixels is decoded at 1/2: its box is scaled down, its keypoints mapped back."""

    root = tmp_path / "ds"
    (root / "jpg").mkdir(parents=True)
    Image.fromarray(_photo(320, 240)).save(root / "jpg" / "q.jpg", quality=95)
    Image.fromarray(_photo(120, 160)).save(root / "jpg" / "db.jpg")
    box = [40.0, 60.0, 200.0, 300.0]
    (root / "gnd.json").write_text(
        json.dumps(
            {"imlist": ["db.jpg"], "qimlist": ["q.jpg"], "gnd": [{"easy": [0], "hard": [], "junk": [], "bbx": box}]}
        )
    )
    cap = 320 * 240 // 3
    lists, _ = build_image_lists(root, "ds", max_pixels=cap)
    lp = tmp_path / "lists.json"
    lp.write_text(json.dumps(lists))
    cfg = {"k": 200, "max_side": 1024, "contrast_threshold": 0.02, "edge_threshold": 10.0, "scale": 1.0}
    out = {}
    for name, limit in (("full", DEFAULT_MAX_IMAGE_PIXELS), ("reduced", cap)):
        extract_local_chunk(lp, "query", 0, 1, tmp_path / f"{name}.h5", "sift", cfg, "test", max_image_pixels=limit)
        with h5py.File(tmp_path / f"{name}.h5", "r") as f:
            out[name] = (int(f["count"][0]), f["xy"][0], f["image_size"][0])
    n, xy, size = out["reduced"]
    assert n > 10 and (size == [240, 320]).all()
    assert xy[:n, 0].min() >= 40 - 2 and xy[:n, 0].max() <= 200 + 2 and xy[:n, 1].min() >= 60 - 2
    assert xy[:n, 1].max() > 200  # full-image pixels, beyond the reduced image's 160 rows
    # the strongest keypoints of the reduced decode lie where the full decode found keypoints
    xyf = out["full"][1][: out["full"][0]]
    d = np.linalg.norm(xy[:10, None, :] - xyf[None], axis=2).min(axis=1)
    assert np.median(d) < 3


def test_the_featureless_warning_names_a_folder_without_queries_by_its_name_alone():
    """A collection or a folder of photos to search has all its images on the db side: "(db)" misled (a user's trial)."""
    with_gnd = {"dataset": "demo", "db": [{"name": "a"}], "query": [{"name": "q"}]}
    folder = {"dataset": "newq", "db": [{"name": "a"}], "query": []}
    assert _store_name(with_gnd, "db") == "demo" and _store_name(with_gnd, "query") == "demo (query)"
    assert _store_name(folder, "db") == "newq"
    assert _store_name({"dataset": "mine", "db": []}, "db") == "mine"  # db.json: whether it has queries is not said
    assert _store_name({"db": []}, "db") == "db"

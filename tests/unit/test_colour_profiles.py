"""Embedded ICC profiles are applied: decoded pixels are the sRGB a colour-managed viewer shows.

The profiles are written here from the ICC.1 v2 layout (header, tag table, matrix / TRC and lut8 tags), and the
expected pixels come from the colorimetry formulas (sRGB's transfer curve, CIE Lab to XYZ), not from LittleCMS, so
a transform in the wrong direction, applied twice or not at all fails."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from retrieval.data.images import decode_image, load_gray, load_rgb

D50 = (0.9642, 1.0, 0.8249)
# sRGB's primaries adapted to D50 (Bradford), as in LittleCMS's built-in sRGB and the sRGB IEC61966-2.1 profile
SRGB_D50 = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))


def _s15(x):
    return struct.pack(">i", round(x * 65536))


def _desc(text):  # textDescriptionType: ASCII (bytes: as given), then empty Unicode and ScriptCode parts
    a = (text if isinstance(text, bytes) else text.encode("ascii")) + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(a)) + a + bytes(8) + bytes(3) + bytes(67)


def _xyz(x, y, z):
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def _gamma(g):  # curveType with one entry: a pure power curve, u8Fixed8
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(g * 256)) + bytes(2)


def _table(values):  # curveType with a table: 16-bit samples of the curve on [0, 1]
    return (
        b"curv"
        + bytes(4)
        + struct.pack(f">I{len(values)}H", len(values), *np.round(np.asarray(values) * 65535).astype(int))
    )


def _profile(space, pcs, device_class, tags):
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = bytearray(128)
    header[0:4] = struct.pack(">I", offset + len(data))
    header[8:12] = bytes([2, 0x10, 0, 0])  # version 2.1
    header[12:16], header[16:20], header[20:24], header[36:40] = device_class, space, pcs, b"acsp"
    header[68:80] = b"".join(_s15(v) for v in D50)
    return bytes(header) + struct.pack(">I", len(tags)) + table + data


def rgb_profile(name, gamma, colorants=SRGB_D50):
    """A matrix / TRC RGB profile; ``gamma`` a power or a curveType tag (``_table``)."""
    r, g, b = colorants
    trc = gamma if isinstance(gamma, bytes) else _gamma(gamma)
    tags = [(b"desc", _desc(name)), (b"wtpt", _xyz(*D50)), (b"rXYZ", _xyz(*r)), (b"gXYZ", _xyz(*g))]
    tags += [(b"bXYZ", _xyz(*b)), (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    return _profile(b"RGB ", b"XYZ ", b"mntr", tags)


def gray_profile(name, gamma):
    return _profile(
        b"GRAY", b"XYZ ", b"mntr", [(b"desc", _desc(name)), (b"wtpt", _xyz(*D50)), (b"kTRC", _gamma(gamma))]
    )


def _ink_lab(c, m, y, k):
    """A press-like CMYK (each 0 or 1) -> CIE Lab D50: cyan Lab(55, -37, -50), a neutral black."""
    lightness = 100 * (1 - 0.45 * c) * (1 - 0.5 * m) * (1 - 0.1 * y) * (1 - 0.9 * k)
    return lightness, (-37 * c + 70 * m) * (1 - k), (-50 * c - 5 * m + 90 * y) * (1 - k)


def cmyk_profile(name):
    """A lut8 (mft1) A2B0 to Lab with a 2-point grid: the 16 corners of ``_ink_lab``, first channel slowest."""
    identity = bytes(range(256))
    grid = b""
    for corner in np.ndindex(2, 2, 2, 2):
        lightness, a, b = _ink_lab(*corner)
        grid += bytes([round(lightness * 255 / 100), round(a + 128), round(b + 128)])
    matrix = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut = b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + matrix + identity * 4 + grid + identity * 3
    return _profile(b"CMYK", b"Lab ", b"prtr", [(b"desc", _desc(name)), (b"wtpt", _xyz(*D50)), (b"A2B0", lut)])


def srgb_encode(linear):
    """IEC 61966-2-1's transfer curve: linear [0, 1] -> 8-bit sRGB values (float)."""
    linear = np.clip(linear, 0, 1)
    return 255 * np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def lab_to_srgb(lightness, a, b):
    """CIE Lab (D50) -> 8-bit sRGB, through XYZ and sRGB's D50-adapted primaries."""
    fy = (lightness + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * np.array(D50)
    return srgb_encode(np.linalg.solve(np.array(SRGB_D50).T, xyz))


def _pixels():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix, kw", [(".png", {}), (".tif", {}), (".webp", {"lossless": True})])
def test_an_rgb_profile_is_applied_to_give_srgb(tmp_path, suffix, kw, caplog):
    """Pixels tagged as linear RGB (sRGB's primaries, gamma 1.0) are sRGB-encoded: 50 -> 122, not 50."""
    x = _pixels()
    p = tmp_path / f"linear{suffix}"
    Image.fromarray(x).save(p, icc_profile=rgb_profile("Linear RGB", 1.0), **kw)
    with caplog.at_level("WARNING"):
        got = load_rgb(p).astype(int)
    assert caplog.text == ""
    expected = srgb_encode(x / 255.0)
    assert np.abs(got - expected).max() <= 1
    assert np.abs(got - x).mean() > 30  # read as sRGB, the photo is far darker


def test_a_wide_gamut_profile_is_not_read_as_srgb(tmp_path):
    """Adobe RGB (1998)'s primaries with its gamma 2.2: a mid green in Adobe RGB is a deeper green than the same
    values in sRGB, and gray stays gray (the white points agree)."""
    adobe_d50 = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
    x = np.array([[[60, 160, 60], [128, 128, 128]]], np.uint8)
    p = tmp_path / "adobe.png"
    Image.fromarray(x).save(p, icc_profile=rgb_profile("Adobe RGB (1998)", 563 / 256, adobe_d50))
    got = load_rgb(p).astype(int)
    linear = (x / 255.0) ** (563 / 256)
    expected = srgb_encode(np.linalg.solve(np.array(SRGB_D50).T, (linear @ np.array(adobe_d50)).reshape(-1, 3).T).T)
    assert np.abs(got.reshape(-1, 3) - expected).max() <= 2
    assert got[0, 0, 1] - got[0, 0, 0] > 100 - 10  # deeper: the sRGB read's difference is 100
    assert np.ptp(got[0, 1]) <= 1


def test_a_gray_profile_is_applied_and_the_image_stays_gray(tmp_path):
    gray = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    p = tmp_path / "linear_gray.png"
    Image.fromarray(gray, "L").save(p, icc_profile=gray_profile("Linear gray", 1.0))
    got = decode_image(p, "gray").pixels
    assert got.shape == gray.shape
    assert np.abs(got.astype(int) - srgb_encode(gray / 255.0)).max() <= 1
    assert (load_rgb(p)[:, :, 0] == got).all()


def test_a_cmyk_profile_replaces_the_naive_conversion(tmp_path):
    """A CMYK JPEG (a print file) with its profile: pure cyan is the profile's Lab(55, -37, -50), about (0, 151,
    218), not the (0, 255, 255) of Pillow's naive conversion; no ink is white."""
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, 8:, 0] = 255
    p = tmp_path / "print.jpg"
    Image.fromarray(cmyk, "CMYK").save(p, icc_profile=cmyk_profile("Test press CMYK"), quality=100)
    got = load_rgb(p).astype(int)
    assert np.abs(got[:, :8] - 255).max() <= 2
    cyan = got[4:12, 10:14].reshape(-1, 3).mean(axis=0)
    assert np.abs(cyan - lab_to_srgb(*_ink_lab(1, 0, 0, 0))).max() <= 3
    naive = np.asarray(Image.open(p).convert("RGB")).astype(int)
    assert np.abs(naive[4:12, 10:14] - [0, 255, 255]).max() <= 3


def test_the_profile_is_applied_with_the_orientation_and_on_white(tmp_path):
    """EXIF orientation 6 and a profile together: turned once and transformed once; a transparent pixel is the
    white a viewer shows (white is white in the profile)."""
    x = _pixels()
    rgba = np.dstack([x, np.full(x.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0
    p = tmp_path / "turned.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgba, "RGBA").save(p, exif=exif, icc_profile=rgb_profile("Linear RGB", 1.0))
    got = load_rgb(p).astype(int)
    upright = np.rot90(srgb_encode(x / 255.0), -1)
    assert got.shape == upright.shape
    opaque = np.ones(got.shape[:2], bool)
    opaque[0, -1] = False  # stored (0, 0), turned 90 clockwise
    assert np.abs(got[opaque] - upright[opaque]).max() <= 1
    assert (got[0, -1] == 255).all()


def srgb_decode(encoded):
    """IEC 61966-2-1's transfer curve inverted: [0, 1] -> linear [0, 1]."""
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def test_an_srgb_profile_leaves_the_pixels_as_they_are_whatever_its_name(tmp_path, caplog):
    """A profile that is sRGB's (sRGB's primaries and its curve as a 1024-entry table, as the IEC61966-2.1 profile
    cameras embed holds it, or as a coarse 16-entry table, within a level of it) is what the pixels are: not
    applied, not even rounded, under any name. Applied, the 16-entry one moves about a fifth of these pixels by a
    level, so this fails without the probe; the 1024-entry one LittleCMS reproduces exactly."""
    x = _pixels()
    for entries in (1024, 16):
        srgb_curve = _table(srgb_decode(np.linspace(0, 1, entries)))
        for name in ("sRGB IEC61966-2.1", "Camera RGB", ""):
            p = tmp_path / f"camera{entries}_{len(name)}.png"
            Image.fromarray(x).save(p, icc_profile=rgb_profile(name, srgb_curve))
            with caplog.at_level("WARNING"):
                assert (load_rgb(p) == x).all(), (entries, name)
    assert caplog.text == ""


@pytest.mark.parametrize("name", [b"GIMP built-in Linear sRGB", b"sRGB-elle-V2-g10", b"Linear s\xc3RGB"])
def test_a_profile_named_after_srgb_is_applied_where_it_is_not_srgb(tmp_path, name, caplog):
    """Linear-light profiles named after sRGB (GIMP's, Elle Stone's) and one whose description Pillow cannot read
    (a Latin-1 byte in a v2 ``desc``): applied, not taken as sRGB by their names (helper-126: similarity 0.424
    against 0.962 for the same photo, the profile ignored)."""
    x = _pixels()
    p = tmp_path / "linear.png"
    Image.fromarray(x).save(p, icc_profile=rgb_profile(name, 1.0))
    with caplog.at_level("WARNING"):
        got = load_rgb(p).astype(int)
    assert caplog.text == ""
    assert np.abs(got - srgb_encode(x / 255.0)).max() <= 1


def test_a_damaged_profile_is_named_and_the_pixels_read_as_srgb(tmp_path, caplog):
    x = _pixels()
    p = tmp_path / "damaged.png"
    Image.fromarray(x).save(p, icc_profile=b"\0\0\0\x80" + b"not a profile" * 20)
    with caplog.at_level("WARNING"):
        assert (load_rgb(p) == x).all()
    assert f"{p}: its embedded ICC profile cannot be read" in caplog.text
    assert "pixels read as sRGB" in caplog.text


def test_a_profile_for_other_pixels_is_named_and_not_applied(tmp_path, caplog):
    """An RGB profile on a gray image (an editor kept the profile when it made the image gray) is not applied."""
    gray = (np.arange(16 * 16) % 256).astype(np.uint8).reshape(16, 16)
    p = tmp_path / "grayed.png"
    Image.fromarray(gray, "L").save(p, icc_profile=rgb_profile("Display P3", 1.0))
    with caplog.at_level("WARNING"):
        assert (load_gray(p) == gray).all()
    assert f"{p}: its embedded ICC profile ('Display P3') is for RGB pixels, the image's are L; not applied" in (
        caplog.text
    )


def _png_with_chunk(pixels, chunk_type, body):
    """A PNG of ``pixels`` with one more chunk after IHDR, laid out by hand (Pillow writes no damaged chunk)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    data = buf.getvalue()
    chunk = struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", zlib.crc32(chunk_type + body))
    return data[:33] + chunk + data[33:]  # 8-byte signature + 25-byte IHDR chunk


def test_a_profile_pillow_could_not_read_is_named(tmp_path, caplog):
    """A PNG's iCCP whose compressed profile is corrupt (Pillow keeps ``icc_profile: None``; a JPEG's APP2
    segments that do not add up are kept the same way): warned, not passed over in silence (helper-126)."""
    x = _pixels()
    p = tmp_path / "corrupt_iccp.png"
    p.write_bytes(_png_with_chunk(x, b"iCCP", b"prof\0\0" + b"not zlib data"))
    with caplog.at_level("WARNING"):
        assert (load_rgb(p) == x).all()
    assert f"{p}: its embedded ICC profile is damaged (incomplete or corrupt); pixels read as sRGB" in caplog.text


def test_a_cmyk_image_whose_profile_cannot_be_used_gets_pillows_conversion(tmp_path, caplog):
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[:, :, 0] = 255
    p = tmp_path / "print.jpg"
    Image.fromarray(cmyk, "CMYK").save(p, icc_profile=cmyk_profile("Test press CMYK")[:300], quality=100)
    with caplog.at_level("WARNING"):
        got = load_rgb(p).astype(int)
    assert np.abs(got - [0, 255, 255]).max() <= 3
    assert f"{p}: its embedded ICC profile cannot be" in caplog.text
    assert "Pillow's CMYK conversion used" in caplog.text


def test_lab_pixels_with_a_lab_profile_are_converted_without_a_warning(tmp_path, caplog):
    lab = np.zeros((8, 8, 3), np.uint8)
    lab[:, :, 0] = 128
    p = tmp_path / "lab.tif"
    Image.fromarray(lab, "LAB").save(p, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes())
    with caplog.at_level("WARNING"):
        got = load_rgb(p)
    assert caplog.text == ""
    assert np.ptp(got) <= 1 and 100 < got.mean() < 140  # a mid gray


LINEAR = rgb_profile("Linear RGB", 1.0)


def test_an_rgb_png_with_a_transparent_colour_is_white_there_and_managed_elsewhere(tmp_path):
    """A tRNS colour is matched on the stored values, before the profile moves them (helper-128: applied first, the
    transparent pixel decoded as (56, 79, 96), not white)."""
    x = np.full((8, 8, 3), 60, np.uint8)
    x[0, 0] = (10, 20, 30)
    p = tmp_path / "trns.png"
    Image.fromarray(x).save(p, transparency=(10, 20, 30), icc_profile=LINEAR)
    got = load_rgb(p).astype(int)
    assert (got[0, 0] == 255).all()
    assert np.abs(got[1:, 1:] - srgb_encode(60 / 255.0)).max() <= 1


def test_a_16bit_rgb_png_with_a_profile_is_managed_after_its_scaling(tmp_path):
    """16-bit RGB (read by OpenCV, Pillow keeps only the high byte) with an iCCP chunk: managed (helper-128: without
    the 16-bit path's own step the profile was dropped, error 73)."""
    rng = np.random.default_rng(4)
    x16 = rng.integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    ok, png = cv2.imencode(".png", x16[:, :, ::-1])
    assert ok
    data = png.tobytes()
    body = b"Linear RGB\0\0" + zlib.compress(LINEAR)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    p = tmp_path / "deep.png"
    p.write_bytes(data[:33] + chunk + data[33:])
    assert Image.open(p).info["icc_profile"] == LINEAR
    got = load_rgb(p).astype(int)
    eight = np.rint(x16 / 257.0)
    assert np.abs(got - srgb_encode(eight / 255.0)).max() <= 1


@pytest.mark.parametrize("mode", ["LA", "I;16"])
def test_gray_modes_with_alpha_or_16_bits_take_a_gray_profile(tmp_path, mode, caplog):
    """LA (composited on white) and 16-bit gray decode to gray here, so a gray profile is theirs (helper-128: a
    mode list that forgot them warned of a mismatch and left them unmanaged)."""
    levels = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
    if mode == "LA":
        im = Image.fromarray(np.dstack([levels, np.full_like(levels, 255)]), "LA")
    else:
        im = Image.fromarray(levels.astype(np.uint16) * 257)
        assert im.mode == "I;16"
    p = tmp_path / f"gray_{mode.replace(';', '')}.png"
    im.save(p, icc_profile=gray_profile("Linear gray", 1.0))
    with caplog.at_level("WARNING"):
        got = decode_image(p, "gray").pixels.astype(int)
    assert caplog.text == ""
    assert np.abs(got - srgb_encode(levels / 255.0)).max() <= 1


def test_a_camera_jpeg_turned_by_its_exif_tag_is_managed_in_place(tmp_path):
    """The common case: a JPEG with an embedded profile and EXIF orientation 6, managed on Pillow's own pixels and
    turned once."""
    x = np.kron(_pixels()[:6, :8], np.ones((8, 8, 1), np.uint8))  # 48 x 64 blocks of one colour: JPEG keeps them
    p = tmp_path / "IMG_0001.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(x, 1))).save(p, exif=exif, icc_profile=LINEAR, quality=100)
    got = load_rgb(p).astype(int)
    assert got.shape == x.shape
    centres = (slice(4, None, 8), slice(4, None, 8))  # each block's middle, away from the codec's edges
    assert np.abs(got[centres] - srgb_encode(x[centres] / 255.0)).mean() < 3
    assert np.abs(got[centres] - x[centres]).mean() > 30


def test_a_heic_with_a_profile_is_managed(tmp_path):
    x = np.kron(_pixels()[:6, :8], np.ones((8, 8, 1), np.uint8))
    p = tmp_path / "IMG_0002.heic"
    Image.fromarray(x).save(p, icc_profile=LINEAR, quality=95)
    got = load_rgb(p).astype(int)
    centres = (slice(4, None, 8), slice(4, None, 8))
    assert np.abs(got[centres] - srgb_encode(x[centres] / 255.0)).mean() < 3
    assert np.abs(got[centres] - x[centres]).mean() > 30


def test_an_srgb_profile_on_a_gray_image_is_passed_over_quietly(tmp_path, caplog):
    """Some tools keep sRGB's profile on a gray JPEG: nothing to apply, and no mismatch warning per file."""
    srgb_curve = _table(srgb_decode(np.linspace(0, 1, 1024)))
    gray = (np.arange(16 * 16) % 256).astype(np.uint8).reshape(16, 16)
    p = tmp_path / "gray_srgb.png"
    Image.fromarray(gray, "L").save(p, icc_profile=rgb_profile("sRGB IEC61966-2.1", srgb_curve))
    with caplog.at_level("WARNING"):
        assert (load_gray(p) == gray).all()
    assert caplog.text == ""

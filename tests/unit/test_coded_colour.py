"""HEIF and AVIF colour described by code points (nclx, H.273) rather than an ICC profile: converted to the sRGB a
viewer shows. The expected pixels come from published matrices and the standards' formulas and constants written
out here, not from the module under test (but for the AVIF test, which checks that an AVIF's pixels get the same
conversion as a HEIF's, and the test that block-wise conversion gives what one block gives)."""

import io
import logging

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageCms
from test_colour_profiles import rgb_profile

from retrieval.data import colour
from retrieval.data.images import decode_image

# linear sRGB -> linear Display P3 and -> linear BT.2020 (both D65), as published (e.g. ITU-R BT.2087 for BT.2020)
SRGB_TO_P3 = np.array([[0.8225, 0.1774, 0.0000], [0.0332, 0.9669, 0.0000], [0.0171, 0.0724, 0.9108]])
SRGB_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])


def srgb_to_linear(e):
    e = np.asarray(e, dtype=np.float64)
    return np.where(e <= 0.04045, e / 12.92, ((e + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v):
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


def pq_encode(nits):  # SMPTE ST 2084 inverse EOTF
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    y = (np.asarray(nits, dtype=np.float64) / 10000) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def hlg_oetf(scene):  # BT.2100 HLG OETF
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    scene = np.asarray(scene, dtype=np.float64)
    return np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - b, 1e-12)) + c)


def patches():
    """(64, 64, 3) uint8 sRGB: 8 x 8 flat patches whose linear levels stay below the HDR knee (0.8), and their
    (8, 8, 3) colours."""
    rng = np.random.default_rng(3)
    colours = rng.integers(20, 228, size=(8, 8, 3)).astype(np.uint8)
    return np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1), colours


def centres(pixels):
    return pixels[4::8, 4::8].astype(int)


def assert_close_in_light(decoded, colours):
    """Decoded patch centres against the intended sRGB colours: within 1.5 levels on average, and within 3% of white
    in linear light everywhere (8-bit HDR codes are coarse: a step of PQ near 100 cd/m^2 is about 4% of the light,
    and a dark channel of a saturated colour, a difference of large BT.2020 components, can be 20 levels off in
    sRGB's steep shadows, 0.007 in light)."""
    assert np.abs(decoded - colours).mean() < 1.5
    assert np.abs(srgb_to_linear(decoded / 255) - srgb_to_linear(colours / 255)).max() < 0.03


def save_heif(path, coded, primaries, transfer):
    """Lossless (RGB kept as RGB, matrix 0), so the file holds exactly ``coded``."""
    Image.fromarray(coded).save(
        path, format="HEIF", quality=-1, chroma=444, matrix_coefficients=0, color_primaries=primaries,
        transfer_characteristics=transfer,
    )  # fmt: skip


def test_the_matrices_are_the_standards():
    srgb = colour.rgb_to_xyz(colour.SRGB_XY, colour.D65)
    iec = [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]  # IEC 61966-2-1
    np.testing.assert_allclose(srgb, iec, atol=2e-4)
    bt2020 = colour.rgb_to_xyz(((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)), colour.D65)
    np.testing.assert_allclose(bt2020[1], [0.2627, 0.6780, 0.0593], atol=1e-4)  # BT.2020's luma weights
    d65_to_d50 = [[1.0478, 0.0229, -0.0501], [0.0295, 0.9905, -0.0170], [-0.0092, 0.0150, 0.7521]]  # Lindbloom
    np.testing.assert_allclose(colour.bradford(colour.D65, (0.3457, 0.3585)), d65_to_d50, atol=3e-4)
    np.testing.assert_allclose(colour.bradford(colour.D65, colour.D65), np.eye(3), atol=1e-12)


def test_the_transfer_functions_are_the_standards():
    np.testing.assert_allclose(colour.pq_eotf(pq_encode([0.0, 100.0, 203.0, 1000.0, 10000.0])),
                               [0.0, 100.0, 203.0, 1000.0, 10000.0], rtol=1e-9, atol=1e-9)  # fmt: skip
    assert colour.pq_eotf(0.58) == pytest.approx(203, rel=0.01)  # BT.2408: reference white at 58% PQ
    scene = np.array([0.0, 0.01, 1 / 12, 0.3, 1.0])
    np.testing.assert_allclose(colour.hlg_inverse_oetf(hlg_oetf(scene)), scene, atol=1e-9)
    # BT.2408: HLG reference white is 75% signal, 203 cd/m^2 on a 1,000 cd/m^2 display (gray: Ys = E)
    e = colour.hlg_inverse_oetf(0.75)
    assert 1000.0 * e**1.2 == pytest.approx(203, rel=0.01)
    v = np.linspace(0, 20, 2001)
    k = colour.highlight_knee(v)
    assert np.array_equal(k[v <= 0.8], v[v <= 0.8]) and (np.diff(k) > 0).all() and k.max() < 1
    just_above = (colour.highlight_knee(np.array([0.8 + 1e-6])) - 0.8) / 1e-6
    assert just_above[0] == pytest.approx(1, abs=1e-4)  # slope 1 where the knee starts: no crease
    np.testing.assert_allclose(colour.highlight_knee(np.array([1.0, 2.0])), [0.9, 0.8 + 0.2 * 6 / 7])  # t = 1, 6


@pytest.mark.parametrize(("primaries", "transfer"), [(1, 13), (2, 2), (1, 1), (1, 6), (2, 14), (1, 15)])
def test_srgb_code_points_change_nothing(tmp_path, primaries, transfer, caplog):
    """Most AVIF and HEIF encoders write BT.709 primaries with sRGB's curve, and the SDR camera curves (BT.709, BT.601,
    BT.2020) are shown as sRGB's: the pixels are decoded as stored."""
    px, _ = patches()
    p = tmp_path / "srgb.heic"
    save_heif(p, px, primaries, transfer)
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(decode_image(p).pixels, px)
    assert caplog.text == ""  # read as sRGB because they are, not as code points it cannot convert


def test_display_p3_code_points_are_converted_to_srgb(tmp_path):
    px, colours = patches()
    p3 = linear_to_srgb(srgb_to_linear(px / 255) @ SRGB_TO_P3.T)  # the same colours coded in Display P3
    p = tmp_path / "p3.heic"
    save_heif(p, np.rint(p3 * 255).astype(np.uint8), 12, 13)
    decoded = centres(decode_image(p).pixels)
    assert np.abs(decoded - colours).max() <= 2  # the 8-bit P3 coding rounds once, the conversion once
    read_as_srgb = np.rint(p3 * 255)[4::8, 4::8]
    assert np.abs(read_as_srgb - colours).max() > 10  # what decoding without the code points gave


def test_pq_bt2020_is_tone_mapped_with_reference_white_as_sdr_white(tmp_path):
    """Canon's HDR PQ HEIF: BT.2020 primaries, PQ. Colours at or below reference white come back as the SDR photo
    has them (within PQ's 8-bit steps); read as sRGB they are flat and gray."""
    px, colours = patches()
    nits = srgb_to_linear(px / 255) @ SRGB_TO_BT2020.T * 203.0  # BT.2408's reference white
    coded = np.rint(pq_encode(nits) * 255).astype(np.uint8)
    p = tmp_path / "hdr.hif"
    save_heif(p, coded, 9, 16)
    assert_close_in_light(centres(decode_image(p).pixels), colours)
    assert np.abs(colours - centres(coded)).mean() > 20  # PQ codes shown as sRGB: flat and gray


def test_hlg_bt2020_goes_through_the_ootf(tmp_path):
    px, colours = patches()
    display = srgb_to_linear(px / 255) @ SRGB_TO_BT2020.T * 203.0 / 1000.0  # on a 1,000 cd/m^2 display
    yd = display @ np.array([0.2627, 0.6780, 0.0593])
    scene = display / np.maximum(yd, 1e-12)[..., None] ** (1 - 1 / 1.2)  # inverse OOTF, system gamma 1.2
    p = tmp_path / "hlg.heic"
    save_heif(p, np.rint(hlg_oetf(scene) * 255).astype(np.uint8), 9, 18)
    assert_close_in_light(centres(decode_image(p).pixels), colours)


@pytest.mark.parametrize("transfer", [16, 18, 4])
def test_unspecified_primaries_are_bt709s(tmp_path, transfer):
    """Primaries 2 (unspecified), for which libheif reports every chromaticity as 0: converted as BT.709's (1), not
    refused (helper-129: `chromaticity (0.0, 0.0) is not a colour` failed the whole search)."""
    px, _ = patches()
    save_heif(tmp_path / "unspecified.heic", px, 2, transfer)
    save_heif(tmp_path / "bt709.heic", px, 1, transfer)
    assert pillow_heif.open_heif(tmp_path / "unspecified.heic").info["nclx_profile"]["color_primary_red_x"] == 0
    unspecified = decode_image(tmp_path / "unspecified.heic").pixels
    assert np.array_equal(unspecified, decode_image(tmp_path / "bt709.heic").pixels)
    assert not np.array_equal(unspecified, px)  # the transfer applied (the file is lossless)


def test_hdr_highlights_are_compressed_not_clipped():
    """Above reference white PQ levels stay distinct (a bright sky keeps its clouds), in order, below 255; the knee
    starts at 0.8 in linear light, so reference white is near white but not clipped with them."""
    levels = np.rint(pq_encode(np.array([203.0, 400.0, 800.0, 10000.0])) * 255).astype(np.uint8)
    px = np.repeat(levels[:, None], 3, axis=1)[None]
    c = colour.CodedColour(9, 16, ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)), colour.D65)
    out = colour.coded_to_srgb(px, c)[0, :, 0].astype(int)
    assert (np.diff(out[:3]) > 0).all() and out[2] < 255 and 240 <= out[0] < 250 and out[3] == 255


def _avif_with_code_points(pixels, primaries, transfer):
    b = io.BytesIO()
    Image.fromarray(pixels).save(b, format="AVIF", quality=100, subsampling="4:4:4")
    data = bytearray(b.getvalue())
    at = data.find(b"colrnclx")
    assert at > 0, "Pillow's AVIF writer wrote no nclx box"
    data[at + 8 : at + 12] = primaries.to_bytes(2, "big") + transfer.to_bytes(2, "big")
    return bytes(data)


def test_an_avifs_code_points_are_read_with_libheif(tmp_path):
    """Pillow's AVIF reader reports no nclx; the code points are read from the file's boxes."""
    px, colours = patches()
    p3 = np.rint(linear_to_srgb(srgb_to_linear(px / 255) @ SRGB_TO_P3.T) * 255).astype(np.uint8)
    p = tmp_path / "p3.avif"
    p.write_bytes(_avif_with_code_points(p3, 12, 13))
    assert pillow_heif.open_heif(p).info["nclx_profile"]["color_primaries"] == 12
    plain = tmp_path / "plain.avif"
    plain.write_bytes(_avif_with_code_points(p3, 1, 13))
    as_stored = centres(decode_image(plain).pixels)
    decoded = decode_image(p).pixels
    p3_coded = colour.CodedColour(12, 13, ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), colour.D65)
    assert np.array_equal(decoded, colour.coded_to_srgb(decode_image(plain).pixels, p3_coded))  # the same pixels
    assert np.abs(centres(decoded) - colours).mean() < np.abs(as_stored - colours).mean() / 3  # (AV1 is lossy)


def test_a_transfer_not_converted_is_named_and_the_pixels_read_as_srgb(tmp_path, caplog):
    px, _ = patches()
    p = tmp_path / "log.heic"
    save_heif(p, px, 9, 10)  # transfer 10: logarithmic (100:1)
    with caplog.at_level(logging.WARNING):
        pixels = decode_image(p).pixels
    assert np.array_equal(pixels, px)
    assert f"{p}: its colour description (colour primaries 9, transfer 10) is not applied" in caplog.text


def test_an_icc_profile_takes_precedence_over_code_points(tmp_path):
    """An AVIF holding both colour boxes (libavif writes an nclx beside a given profile): the profile is applied, the
    code points (here PQ) are not, as the AVIF specification says."""
    px, _ = patches()
    icc = rgb_profile("Gamma 1.8 RGB", 1.8)

    def avif(primaries, transfer):
        b = io.BytesIO()
        Image.fromarray(px).save(b, format="AVIF", quality=100, subsampling="4:4:4", icc_profile=icc)
        data = bytearray(b.getvalue())
        at = data.find(b"colrnclx")
        data[at + 8 : at + 12] = primaries.to_bytes(2, "big") + transfer.to_bytes(2, "big")
        return bytes(data)

    (tmp_path / "both.avif").write_bytes(avif(9, 16))
    (tmp_path / "profile.avif").write_bytes(avif(1, 13))
    both = decode_image(tmp_path / "both.avif").pixels
    assert np.array_equal(both, decode_image(tmp_path / "profile.avif").pixels)
    assert np.abs(both.astype(int) - np.asarray(Image.open(tmp_path / "both.avif"))).mean() > 5  # the profile applied


def test_gray_takes_only_the_transfer():
    c = colour.CodedColour(9, 4, ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)), colour.D65)  # gamma 2.2
    gray = np.arange(256, dtype=np.uint8)[None]
    out = colour.coded_to_srgb(gray, c)[0].astype(int)
    expected = np.rint(linear_to_srgb((np.arange(256) / 255) ** 2.2) * 255)
    assert np.abs(out - expected).max() <= 1 and out.shape == (256,)


def test_primaries_that_are_no_gamut_are_unsupported():
    c = colour.CodedColour(22, 13, ((0.3, 0.3), (0.3, 0.3), (0.15, 0.06)), colour.D65)
    assert "do not span a gamut" in colour.unsupported(c)
    with pytest.raises(ValueError):
        colour.coded_to_srgb(np.zeros((2, 2, 3), np.uint8), c)


def test_a_white_other_than_d65_is_adapted_and_stays_neutral():
    """DCI-P3 (primaries 11) has a greenish theatre white (0.314, 0.351): adapted by Bradford, as ICC relative
    colorimetric does, its white and grays stay neutral in sRGB (unadapted, its white would be (242, 255, 238))."""
    dci = colour.CodedColour(11, 13, ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), (0.314, 0.351))
    grays = np.repeat(np.array([255, 180, 100, 30], np.uint8)[:, None], 3, axis=1)[None]
    out = colour.coded_to_srgb(grays, dci)[0].astype(int)
    assert (out.max(axis=1) - out.min(axis=1)).max() <= 1 and out[0].min() >= 254


# linear sRGB -> linear Adobe RGB (1998), both D65, as published (sRGB's green and red are inside Adobe's gamut)
SRGB_TO_ADOBE = np.array([[0.7152, 0.2848, 0.0000], [0.0000, 1.0000, 0.0000], [0.0000, 0.0412, 0.9588]])


def exif_marked(colour_space, index=None, orientation=1):
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x8769] = {0xA001: colour_space, **({0xA005: {0x0001: index}} if index else {})}
    return exif.tobytes()


def adobe_coded(px):
    return np.rint(np.clip(srgb_to_linear(px / 255) @ SRGB_TO_ADOBE.T, 0, 1) ** (256 / 563) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("colour_space", "index", "name"),
    [(0xFFFF, "R03", "_DSC0001.JPG"), (2, None, "x.tif")],
)
def test_adobe_rgb_marked_in_exif_is_converted(tmp_path, colour_space, index, name):
    """A camera set to Adobe RGB writes its JPEGs without a profile, marked in EXIF (DCF: ColorSpace uncalibrated and
    interoperability index R03; some cameras ColorSpace 2): converted from Adobe RGB (1998), not read as sRGB.
    Within 3 levels of the intended colours for a (lossless) TIFF, whose 8-bit Adobe codes round once; a JPEG's
    YCbCr rounding, amplified where a saturated colour's dark channel is a difference of Adobe components, within 1.5
    on average. (Pillow writes a TIFF's interoperability IFD where its reader does not find it, so R03 is tested in
    the JPEG, where cameras write it.)"""
    px, colours = patches()
    p = tmp_path / name
    kw = {"quality": 100, "subsampling": 0} if name.endswith(".JPG") else {}
    Image.fromarray(adobe_coded(px)).save(p, exif=exif_marked(colour_space, index), **kw)
    error = np.abs(centres(decode_image(p).pixels) - colours)
    assert error.mean() < 1.5 and (name.endswith(".JPG") or error.max() <= 3)
    assert np.abs(centres(adobe_coded(px)) - colours).max() > 20  # what reading them as sRGB gave


@pytest.mark.parametrize(("colour_space", "index"), [(1, "R98"), (0xFFFF, None), (0xFFFF, "R98"), (1, "R03")])
def test_other_exif_colour_marks_change_nothing(tmp_path, colour_space, index):
    """sRGB (1, DCF's R98), or uncalibrated without DCF's Adobe RGB index: the pixels as stored (JPEGs, whose
    interoperability IFD Pillow writes where it reads it)."""
    px, _ = patches()
    p = tmp_path / "photo.jpg"
    Image.fromarray(px).save(p, quality=95, exif=exif_marked(colour_space, index))
    assert Image.open(p).getexif().get_ifd(0xA005).get(1) == index  # the index is there to be read
    assert np.array_equal(decode_image(p).pixels, np.asarray(Image.open(p).convert("RGB")))


def test_a_profile_takes_precedence_over_the_exif_mark(tmp_path):
    px, _ = patches()
    p = tmp_path / "photo.jpg"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(px).save(p, quality=100, subsampling=0, exif=exif_marked(0xFFFF, "R03"), icc_profile=srgb)
    assert np.array_equal(decode_image(p).pixels, np.asarray(Image.open(p).convert("RGB")))


def test_the_published_adobe_matrix_is_the_one_computed():
    computed = np.linalg.inv(colour.rgb_to_xyz(colour.ADOBE_RGB_XY, colour.D65)) @ colour.rgb_to_xyz(
        colour.SRGB_XY, colour.D65
    )
    np.testing.assert_allclose(computed, SRGB_TO_ADOBE, atol=2e-4)


def test_an_adobe_rgb_mark_goes_with_the_orientation_and_not_on_gray(tmp_path):
    px, _ = patches()
    upright = tmp_path / "upright.jpg"
    turned = tmp_path / "turned.jpg"
    Image.fromarray(adobe_coded(px)).save(upright, quality=95, exif=exif_marked(0xFFFF, "R03"))
    stored = np.ascontiguousarray(np.rot90(adobe_coded(px), 1))  # orientation 6: shown turned 90 degrees clockwise
    Image.fromarray(stored).save(turned, quality=95, exif=exif_marked(0xFFFF, "R03", orientation=6))
    a, b = decode_image(upright).pixels.astype(int), decode_image(turned).pixels.astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() < 1.5  # the same picture, converted (JPEG-coded twice)
    assert np.abs(a - adobe_coded(px)).mean() > 5
    gray = tmp_path / "gray.jpg"  # an Adobe RGB profile on a gray image is not applied either
    Image.fromarray(px[:, :, 1]).save(gray, quality=95, exif=exif_marked(0xFFFF, "R03"))
    assert np.array_equal(decode_image(gray, "gray").pixels, np.asarray(Image.open(gray)))


def test_a_damaged_exif_sub_ifd_is_read_as_unmarked_without_new_warnings(tmp_path, caplog):
    """The Adobe RGB mark is in EXIF's sub-IFDs, which decoding did not read before version 6: a damaged one (a tag
    whose data runs past the segment) reads as no mark, and Pillow's warning about it is not logged at every decode
    (helper-130: 1,639 of 3,697 fuzzed files gained such warnings)."""
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x8769] = {0xA001: 0xFFFF, 0x9286: b"ASCII\0\0\0" + b"x" * 200}  # ColorSpace, then a long UserComment
    px, _ = patches()
    p = tmp_path / "damaged.jpg"
    Image.fromarray(px).save(p, quality=95, exif=exif.tobytes()[:-150])
    with pytest.warns(UserWarning, match="Tag data larger than file"):
        Image.open(p).getexif().get_ifd(0x8769)  # damaged, as Pillow sees it
    with caplog.at_level(logging.WARNING):
        pixels = decode_image(p).pixels
    assert caplog.text == ""
    assert np.array_equal(pixels, np.asarray(Image.open(p).convert("RGB")))


def hlg_decode(e):  # BT.2100 HLG inverse OETF
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    return np.where(e <= 0.5, e * e / 3, (np.exp((e - c) / a) + b) / 12)


def test_hlg_uses_the_luminance_of_its_own_primaries():
    """BT.2100's OOTF raises the scene luminance Ys of the coded primaries (BT.2020's weights 0.2627, 0.6780,
    0.0593) to the power 0.2: each code is computed here from the formulas, and BT.709's weights would give other
    levels."""
    codes = np.stack(np.meshgrid(*[np.arange(20, 256, 29)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)

    def expected(weights):
        scene = hlg_decode(codes / 255)
        display = 1000.0 * (scene @ np.array(weights))[:, None] ** 0.2 * scene / 203.0
        linear = np.maximum(display @ np.linalg.inv(SRGB_TO_BT2020).T, 0)
        t = np.maximum(linear - 0.8, 0) / 0.2
        return np.rint(linear_to_srgb(np.where(linear <= 0.8, linear, 0.8 + 0.2 * t / (1 + t))) * 255)

    bt2020 = colour.CodedColour(9, 18, ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)), colour.D65)
    got = colour.coded_to_srgb(codes.astype(np.uint8)[None], bt2020)[0].astype(int)
    assert np.abs(got - expected([0.2627, 0.6780, 0.0593])).max() <= 1
    assert np.abs(got - expected([0.2126, 0.7152, 0.0722])).max() >= 2


@pytest.mark.parametrize("c", [colour.ADOBE_RGB, colour.CodedColour(9, 16, ((0.708, 0.292), (0.170, 0.797),
                                                                              (0.131, 0.046)), colour.D65)])  # fmt: skip
def test_conversion_in_blocks_is_the_conversion_in_one(monkeypatch, c):
    """Large images are converted a block of pixels at a time: the last, partial block included."""
    rgb = np.random.default_rng(5).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    whole = colour.coded_to_srgb(rgb, c), colour.coded_to_srgb(rgb[:, :, 0], c)
    monkeypatch.setattr(colour, "_BLOCK", 100)  # 1961 pixels: 19 full blocks and one of 61
    assert np.array_equal(colour.coded_to_srgb(rgb, c), whole[0])
    assert np.array_equal(colour.coded_to_srgb(rgb[:, :, 0], c), whole[1])
    with pytest.raises(ValueError, match="uint8"):
        colour.coded_to_srgb(rgb.astype(np.uint16), c)

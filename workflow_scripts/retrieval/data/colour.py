"""Colour described by primaries and a transfer function, converted to sRGB as a colour-managed viewer shows it: the
pixels of a HEIF or AVIF file that describes its colour by code points (the ``nclx`` colour box, ITU-T H.273 /
ISO/IEC 23091-2) rather than an ICC profile, and of a camera JPEG marked Adobe RGB in EXIF (``ADOBE_RGB``, below).

Camera HEIF (``.HIF``: Canon's HDR PQ, Sony's HLG stills) and most AVIF encoders write ``nclx``: colour primaries
(BT.709 = sRGB's, Display P3, BT.2020), a transfer function (sRGB's curve, a gamma, PQ or HLG) and the YCbCr matrix
(libheif and libavif apply the matrix while decoding; the RGB they give is in the coded primaries and transfer).
ICC profiles are applied with LittleCMS in ``images``; no library here converts code points, so the formulas are
written out below (pure numpy):

* **Transfer to linear light.** sRGB's curve (IEC 61966-2-1) for ``transfer_characteristics`` 13 and 2
  (unspecified), and for the SDR camera curves 1, 6, 14, 15 (BT.709, BT.601, BT.2020), which viewers show as
  sRGB's (they differ from it by a few levels in the shadows, and a display is not their inverse); pure gammas 2.2
  (4), 2.8 (5) and linear (8); PQ (16, SMPTE ST 2084) to absolute luminance; HLG (18, ARIB STD-B67) through
  BT.2100's inverse OETF and its OOTF for a 1,000 cd/m^2 display (system gamma 1.2 on the scene luminance).
* **HDR reference white.** PQ and HLG luminance is divided by 203 cd/m^2, the HDR reference (diffuse) white of ITU-R
  BT.2408, which becomes SDR white; the top of the range is then compressed per channel by a soft knee
  (``highlight_knee``: identity up to 0.8 linear, sRGB level 231, then a rational approach to 1, continuous in
  value and slope: reference white at 0.9, level 243; twice it at 0.97, level 252), not clipped, so a sky keeps
  some of its clouds. Surfaces darker than 0.8 of reference white come out where an SDR photo of the scene has
  them; a bright saturated colour moves towards white (per channel, as an SDR camera's clipping does). This is
  this project's tone mapping, the simplest with those properties; BT.2408's and BT.2446's are display-oriented.
* **Primaries.** RGB to CIE XYZ from the primaries' and white's chromaticities (SMPTE RP 177), Bradford chromatic
  adaptation where the white is not D65, then XYZ to linear sRGB; negative (out-of-gamut) values clip to 0 and,
  for SDR transfers, values above 1 to 1 (ICC relative colorimetric, as LittleCMS does for profiles).
* **Encoding.** sRGB's curve, rounded to 8 bits.

Adobe RGB (1998) (``ADOBE_RGB``: its primaries, D65, a pure power of 563 / 256) is described the same way, for the
JPEGs of cameras set to it, which mark it in EXIF rather than embed a profile.

Code points read as sRGB already (BT.709 or unspecified primaries with an sRGB-like transfer) change nothing
(``is_srgb``); unknown primaries or transfers are reported by ``unsupported`` for the caller to warn about.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# H.273 ColourPrimaries read as sRGB's (BT.709): 1, and 2 (unspecified), which decoders take as BT.709
SRGB_PRIMARIES = (1, 2)
# H.273 TransferCharacteristics shown with sRGB's curve: 13 (IEC 61966-2-1), 2 (unspecified), and the SDR camera
# curves BT.709 (1), BT.601 (6) and BT.2020 10/12-bit (14, 15)
SRGB_TRANSFERS = (1, 2, 6, 13, 14, 15)
GAMMA_TRANSFERS = {4: 2.2, 5: 2.8, 8: 1.0}  # BT.470 M, BT.470 B/G, linear
PQ = 16  # SMPTE ST 2084
HLG = 18  # ARIB STD-B67 / BT.2100 HLG
TRANSFER_NAMES = {1: "BT.709", 4: "gamma 2.2", 5: "gamma 2.8", 8: "linear", 13: "sRGB", PQ: "PQ", HLG: "HLG"}

REFERENCE_WHITE_NITS = 203.0  # ITU-R BT.2408: HDR reference (graphics / diffuse) white, cd/m^2
HLG_PEAK_NITS = 1000.0  # BT.2100: the nominal display peak at which HLG's system gamma is 1.2
HLG_SYSTEM_GAMMA = 1.2
KNEE = 0.8  # linear sRGB level above which HDR highlights are compressed

D65 = (0.3127, 0.3290)
SRGB_XY = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))

# Adobe RGB (1998) Color Image Encoding (Adobe, 2005), sections 4.2 and 4.3.1.2: its primaries, D65 white, and
# codes that are linear light raised to 1 / (563 / 256); what a camera set to Adobe RGB records, often without a
# profile (images.py reads its EXIF mark)
ADOBE_RGB_XY = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
ADOBE_RGB_GAMMA = 563 / 256

_BLOCK = 1 << 20  # pixels converted at a time: bounds the float32 temporaries (about 12 bytes a pixel each)


@dataclass(frozen=True)
class CodedColour:
    """A colour description by primaries and transfer: an ``nclx`` box's H.273 code points and the chromaticities
    they stand for, or a named encoding (``ADOBE_RGB``).

    ``primaries_xy``: ((x, y) of red, green, blue); ``white_xy``: (x, y) of the white; ``primaries`` and
    ``transfer``: the H.273 ColourPrimaries and TransferCharacteristics codes (None for a named encoding: its
    chromaticities, and ``gamma``, the pure power its codes are raised to, say it all); ``name``: for messages."""

    primaries: int | None
    transfer: int | None
    primaries_xy: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    white_xy: tuple[float, float]
    gamma: float | None = None
    name: str = ""

    @classmethod
    def from_nclx(cls, nclx: dict) -> CodedColour:
        """From pillow-heif's ``info["nclx_profile"]`` (libheif's reading: codes and ``color_primary_*_x/y``). BT.709's
        and unspecified primaries (1, 2) take sRGB's chromaticities: libheif reports zeros for code 2. Raises KeyError
        for a missing key, TypeError or ValueError for a value that is not a number."""
        primaries = int(nclx["color_primaries"])
        transfer = int(nclx["transfer_characteristics"])
        if primaries in SRGB_PRIMARIES:
            return cls(primaries, transfer, SRGB_XY, D65)
        rgb = ("red", "green", "blue")
        xy = tuple((float(nclx[f"color_primary_{c}_x"]), float(nclx[f"color_primary_{c}_y"])) for c in rgb)
        white = (float(nclx["color_primary_white_x"]), float(nclx["color_primary_white_y"]))
        return cls(primaries, transfer, xy, white)

    def describe(self) -> str:
        """For messages: ``colour primaries 9, transfer 16 (PQ)``, or the encoding's name."""
        if self.name:
            return self.name
        name = TRANSFER_NAMES.get(self.transfer)
        return f"colour primaries {self.primaries}, transfer {self.transfer}" + (f" ({name})" if name else "")


def is_srgb(c: CodedColour) -> bool:
    """Whether decoding leaves the pixels as they are: BT.709 (or unspecified) primaries, an sRGB-like transfer."""
    return c.primaries in SRGB_PRIMARIES and c.transfer in SRGB_TRANSFERS


def unsupported(c: CodedColour) -> str | None:
    """Why ``c`` cannot be converted (a transfer not listed in the module docstring, or chromaticities that are
    not a triangle around their white); None where it can."""
    if c.transfer is None:
        if not (c.gamma is not None and c.gamma > 0):
            return f"no transfer: gamma {c.gamma}"
    elif c.transfer not in SRGB_TRANSFERS and c.transfer not in GAMMA_TRANSFERS and c.transfer not in (PQ, HLG):
        return f"transfer characteristics {c.transfer} is not one converted here"
    if c.primaries not in SRGB_PRIMARIES:
        try:
            rgb_to_xyz(c.primaries_xy, c.white_xy)
        except ValueError as e:
            return f"colour primaries {c.primaries}: {e}"
    return None


def _xyz_of(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    if not (0.0 < y <= 1.0 and 0.0 <= x <= 1.0):
        raise ValueError(f"chromaticity {xy} is not a colour")
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def rgb_to_xyz(primaries_xy, white_xy) -> np.ndarray:
    """(3, 3) float64 matrix from linear RGB of the given primaries to CIE XYZ (Y of white = 1), SMPTE RP 177.
    Raises ValueError where the chromaticities are not colours or the primaries are collinear."""
    p = np.stack([_xyz_of(xy) for xy in primaries_xy], axis=1)  # columns: each primary's XYZ at Y = 1
    if abs(np.linalg.det(p)) < 1e-9:
        raise ValueError(f"primaries {primaries_xy} do not span a gamut")
    s = np.linalg.solve(p, _xyz_of(white_xy))
    if (s <= 0).any():
        raise ValueError(f"white {white_xy} is outside the primaries' gamut {primaries_xy}")
    return p * s


_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def bradford(src_white_xy, dst_white_xy) -> np.ndarray:
    """(3, 3) float64 chromatic adaptation of XYZ from one white to another (the Bradford transform, as ICC v4 and
    LittleCMS use)."""
    src, dst = _BRADFORD @ _xyz_of(src_white_xy), _BRADFORD @ _xyz_of(dst_white_xy)
    return np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD


def to_srgb_matrix(c: CodedColour) -> np.ndarray:
    """(3, 3) float64 from linear RGB in ``c``'s primaries to linear sRGB (D65), adapting the white by Bradford."""
    xyz = rgb_to_xyz(c.primaries_xy, c.white_xy)
    if max(abs(a - b) for a, b in zip(c.white_xy, D65)) > 1e-4:
        xyz = bradford(c.white_xy, D65) @ xyz
    return np.linalg.inv(rgb_to_xyz(SRGB_XY, D65)) @ xyz


def srgb_decode(e: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1: encoded [0, 1] -> linear [0, 1]."""
    e = np.asarray(e, dtype=np.float64)
    return np.where(e <= 0.04045, e / 12.92, ((e + 0.055) / 1.055) ** 2.4)


def srgb_encode(v: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1: linear [0, 1] -> encoded [0, 1] (inputs clipped to [0, 1])."""
    v = np.clip(np.asarray(v, dtype=np.float64), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def pq_eotf(e: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084: encoded [0, 1] -> absolute luminance in cd/m^2 (0-10,000)."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = np.asarray(e, dtype=np.float64) ** (1 / m2)
    return 10000.0 * (np.maximum(p - c1, 0.0) / (c2 - c3 * p)) ** (1 / m1)


def hlg_inverse_oetf(e: np.ndarray) -> np.ndarray:
    """ARIB STD-B67 / BT.2100 HLG: encoded [0, 1] -> normalised scene linear light [0, 1]."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    e = np.asarray(e, dtype=np.float64)
    return np.where(e <= 0.5, e * e / 3.0, (np.exp((np.maximum(e, 0.5) - c) / a) + b) / 12.0)


def highlight_knee(v: np.ndarray, knee: float = KNEE) -> np.ndarray:
    """Linear values >= 0 (1 = SDR white) into [0, 1), same dtype: identity up to ``knee``, then ``knee + (1 - knee)
    * t / (1 + t)`` with ``t = (v - knee) / (1 - knee)`` (Reinhard's curve on the part above the knee), continuous
    with slope 1 at the knee and approaching 1."""
    v = np.asarray(v)
    head = 1.0 - knee
    t = (np.maximum(v, knee) - knee) / head
    return np.where(v <= knee, v, knee + head * t / (1.0 + t)).astype(v.dtype)


def _linear_table(c: CodedColour) -> np.ndarray:
    """The 256 8-bit codes in linear light, float64 (256,): relative to SDR white for SDR transfers, to BT.2408's
    reference white for PQ; HLG's scene light before its OOTF (``_hlg_display``)."""
    e = np.arange(256) / 255.0
    transfer = c.transfer
    if transfer is None:
        return e**c.gamma
    if transfer in SRGB_TRANSFERS:
        return srgb_decode(e)
    if transfer in GAMMA_TRANSFERS:
        return e ** GAMMA_TRANSFERS[transfer]
    if transfer == PQ:
        return pq_eotf(e) / REFERENCE_WHITE_NITS
    if transfer == HLG:
        return hlg_inverse_oetf(e)
    raise ValueError(f"transfer characteristics {transfer} is not one converted here")


def _hlg_display(scene: np.ndarray, luma: np.ndarray | None) -> np.ndarray:
    """BT.2100 HLG OOTF for a ``HLG_PEAK_NITS`` display, relative to reference white: ``peak * Ys^(gamma - 1) * E /
    203``; ``Ys`` the scene luminance (``luma``: the primaries' Y weights) or, for gray, the value itself."""
    ys = scene if luma is None else scene @ luma.astype(scene.dtype)[:, None]
    scale = HLG_PEAK_NITS / REFERENCE_WHITE_NITS
    return scene * (scale * np.power(np.maximum(ys, 1e-12), HLG_SYSTEM_GAMMA - 1)).astype(scene.dtype)


_ENCODE_STEPS = 65535  # linear light is rounded to 1 / 65535 before sRGB's curve (at most 0.05 of an 8-bit level)


@functools.cache
def _encode_table() -> np.ndarray:
    """sRGB's 8-bit code of each of the ``_ENCODE_STEPS + 1`` linear levels, uint8, read-only: built once (a few
    milliseconds), not per image."""
    table = np.rint(srgb_encode(np.arange(_ENCODE_STEPS + 1) / _ENCODE_STEPS) * 255).astype(np.uint8)
    table.setflags(write=False)
    return table


def coded_to_srgb(pixels: np.ndarray, c: CodedColour) -> np.ndarray:
    """8-bit pixels in ``c``'s primaries and transfer -> 8-bit sRGB as a viewer shows them (module docstring).

    ``pixels``: uint8 (H, W, 3) RGB, or (H, W) gray (only the transfer applies: the primaries' white is gray).
    Returns a new uint8 array of the same shape. Raises ValueError for what ``unsupported`` names, or for pixels
    that are not uint8 (H, W) or (H, W, 3)."""
    if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise ValueError(f"pixels must be uint8 (H, W) or (H, W, 3), not {pixels.dtype} {pixels.shape}")
    reason = unsupported(c)
    if reason is not None:
        raise ValueError(reason)
    hdr = c.transfer in (PQ, HLG)
    table = _linear_table(c).astype(np.float32)
    encode = _encode_table()
    gray = pixels.ndim == 2
    matrix = None if gray or c.primaries in SRGB_PRIMARIES else to_srgb_matrix(c).astype(np.float32)
    luma = None if gray else rgb_to_xyz(c.primaries_xy, c.white_xy)[1]
    flat = pixels.reshape(-1, 1 if gray else 3)
    out = np.empty_like(flat)
    for start in range(0, len(flat), _BLOCK):
        v = table[flat[start : start + _BLOCK]]  # (n, channels) float32 linear
        if c.transfer == HLG:
            v = _hlg_display(v, luma)
        if matrix is not None:
            v = v @ matrix.T
        np.maximum(v, 0.0, out=v)
        v = highlight_knee(v) if hdr else np.minimum(v, 1.0, out=v)
        out[start : start + _BLOCK] = encode[np.rint(v * _ENCODE_STEPS).astype(np.int32)]
    return out.reshape(pixels.shape)


ADOBE_RGB = CodedColour(None, None, ADOBE_RGB_XY, D65, gamma=ADOBE_RGB_GAMMA, name="Adobe RGB (1998)")

"""The embedded ``demo`` dataset, generated deterministically from the photos scikit-image ships.

Three splits come out of one run, each in the ``jpg/`` + ``gnd.json`` layout:

* ``demo`` (test): instances are rectangular regions of the *test* photos; every database image shows one
  instance as a synthetic view (homography, scale, rotation, truncation, lighting, blur, occluders), often small,
  inside clutter made from the *background* photos, or no instance at all (distractor). Backgrounds are shared
  by pairs of images that show different instances (confusers). Each query shows one instance in a mild view;
  its box ``bbx`` bounds the instance.
* ``demo-val``: the same construction on instances cut from the *validation* photos, for choosing parameters.
* ``demo-train``: labelled views (``labels``: instance id, -1 for distractors) of collage instances: each one a
  unique composition of rotated, scaled and recoloured patches of the *training* and background photos, with
  drawn shapes and text. No photo is shared between the test, validation and training instances.

Labels of an image that shows the query's instance (revisitop semantics, thresholds in ``LabelRule``):
``junk`` when less than ``junk_below`` of the instance is visible (out of frame or occluded); ``easy`` when at
least ``easy_visible`` is visible and the view is mild (rotation, perspective tilt, blur below the limits and
the instance not small in the frame); ``hard`` otherwise.

``GENERATOR_VERSION`` changes whenever the output for a given configuration would change; it is part of the
artifact version, so a new generator never silently replaces data a model was tuned on.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from retrieval.versions import GENERATOR_VERSION

log = logging.getLogger(__name__)


# Photos are assigned to exactly one pool. motorcycle_right is left out: it shows the same scene as
# motorcycle_left, so it would leak test instances into any other pool.
TEST_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle_left", "camera", "coins")


# Validation instances are regions of their own photos, shared with neither test nor train.
VAL_PHOTOS = ("chelsea", "ihc")


# Training instances are collages: patches of these photos and of the background photos, rotated, scaled and
# recoloured, with drawn shapes and text, so each instance is unique and no photo's look can be memorised.
TRAIN_PHOTOS = ("hubble_deep_field", "retina", "moon", "cell")


BACKGROUND_PHOTOS = ("brick", "grass", "gravel", "page", "text", "clock_motion")


@dataclass(frozen=True)
class LabelRule:
    """Thresholds of the demo's revisitop labels (:func:`label_view`): ``junk`` when less than ``junk_below`` of the
    instance is visible; ``easy`` when at least ``easy_visible`` is, the rotation is at most ``easy_max_rotation``
    degrees, the tilt at most ``easy_max_tilt`` (corner displacement / instance side), the blur at most
    ``easy_max_blur`` (Gaussian sigma, pixels) and the instance's short side at least ``easy_min_rel_size`` of the
    image's; ``hard`` otherwise."""

    junk_below: float = 0.25  # visible fraction below which the instance is "barely visible"
    easy_visible: float = 0.7
    easy_max_rotation: float = 20.0  # degrees
    easy_max_tilt: float = 0.12  # corner displacement / instance side
    easy_max_blur: float = 1.2  # gaussian sigma, pixels
    easy_min_rel_size: float = 0.25  # instance short side / image short side


@dataclass(frozen=True)
class SplitSize:
    """One split's size: at most ``instances`` instances (fewer when the photos have fewer textured regions),
    ``queries`` query images (0 for train), ``views`` database images of each instance and ``distractors`` database
    images without one."""

    instances: int  # at most this many instances (fewer if the photos have fewer textured regions)
    queries: int  # query images (test/val; 0 for train)
    views: int  # images showing each instance
    distractors: int  # images with no instance


@dataclass(frozen=True)
class DemoConfig:
    """The demo generator (config ``demo``): ``seed``; the image sides in pixels (``image_long_side``,
    ``image_short_side``; landscape or portrait); the side of an instance region in its source photo (``region_side``:
    test photos; ``train_region_side``: validation photos, and a training collage's side); ``min_texture``, the
    Laplacian's std below which a region is too flat; for database views ``shared_background`` (the fraction whose
    background another image reuses: confusers), ``small_fraction``, ``small_size`` / ``normal_size`` (instance short
    side / image short side) and ``background_contrast``; the sizes of ``test``, ``val`` and ``train``
    (:class:`SplitSize`); the label thresholds ``labels`` (:class:`LabelRule`)."""

    seed: int = 0
    image_long_side: int = 480
    image_short_side: int = 360
    region_side: int = 170  # target side of an instance region in its source photo (test photos)
    train_region_side: int = 120  # the same for the validation photos, and the side of a training collage
    min_texture: float = 12.0  # std of the Laplacian below which a region is too flat to be an instance
    shared_background: float = 0.4  # fraction of views whose background is reused by another instance (confusers)
    small_fraction: float = 0.35  # fraction of views where the instance is small in the frame
    small_size: tuple[float, float] = (0.25, 0.4)  # instance short side / image short side, small views
    normal_size: tuple[float, float] = (0.45, 0.85)  # the same, other views
    background_contrast: float = 0.25  # clutter contrast around its mean (1 = as photographed)
    test: SplitSize = field(default_factory=lambda: SplitSize(instances=48, queries=70, views=14, distractors=700))
    val: SplitSize = field(default_factory=lambda: SplitSize(instances=16, queries=20, views=10, distractors=200))
    train: SplitSize = field(default_factory=lambda: SplitSize(instances=160, queries=0, views=6, distractors=400))
    labels: LabelRule = field(default_factory=LabelRule)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "DemoConfig":
        """The configuration from a plain mapping (config.yaml's ``demo``, or :meth:`to_dict`'s output): size pairs made
        tuples, ``test`` / ``val`` / ``train`` made :class:`SplitSize` and ``labels`` a :class:`LabelRule`; TypeError
        for a key that is not a field."""
        d = dict(d)
        for key in ("small_size", "normal_size"):
            if key in d:
                d[key] = tuple(d[key])
        for split in ("test", "val", "train"):
            if split in d:
                d[split] = SplitSize(**d[split])
        if "labels" in d:
            d["labels"] = LabelRule(**d["labels"])
        return DemoConfig(**d)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as nested plain dicts (:func:`dataclasses.asdict`), which :meth:`from_dict` reads back."""
        return asdict(self)


def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 photo shipped with scikit-image (read from the installed package, no download)."""
    import skimage.data  # noqa: PLC0415
    import skimage.io  # noqa: PLC0415

    base = Path(skimage.data.__file__).parent
    matches = sorted(p for p in base.iterdir() if p.stem == name and p.suffix in (".png", ".jpg"))
    if not matches:
        raise FileNotFoundError(f"scikit-image photo '{name}' is not in {base}")
    im = skimage.io.imread(matches[0])
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    return np.ascontiguousarray(im[..., :3].astype(np.uint8))


def texture(patch: np.ndarray) -> float:
    """How textured ``patch`` (H, W, 3) uint8 RGB is: the standard deviation of the float32 Laplacian of its grayscale;
    a region below ``DemoConfig.min_texture`` is too flat to be an instance."""
    gray = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_32F).std())


@dataclass
class Instance:
    """One instance: ``id`` (-1 until the instances are numbered), the ``photo`` it was cut from (``collage`` for a
    training instance), its ``box`` (x1, y1, x2, y2) in that photo's pixels and its ``patch`` (H, W, 3) uint8 RGB."""

    id: int
    photo: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the source photo
    patch: np.ndarray


def cut_instances(
    photos: dict[str, np.ndarray], region_side: int, min_texture: float, rng: np.random.Generator
) -> list[Instance]:
    """Non-overlapping textured regions of the photos: a jittered grid of cells, each shrunk at random."""
    out: list[Instance] = []
    for name, im in photos.items():
        h, w = im.shape[:2]
        nx, ny = max(1, round(w / region_side)), max(1, round(h / region_side))
        cw, ch = w / nx, h / ny
        for gy in range(ny):
            for gx in range(nx):
                f = rng.uniform(0.72, 0.95, size=2)
                rw, rh = int(cw * f[0]), int(ch * f[1])
                x1 = int(gx * cw + rng.uniform(0, cw - rw))
                y1 = int(gy * ch + rng.uniform(0, ch - rh))
                patch = im[y1 : y1 + rh, x1 : x1 + rw]
                if texture(patch) < min_texture:
                    continue
                out.append(Instance(-1, name, (x1, y1, x1 + rw, y1 + rh), patch))
    return out


def _rotated_patch(im: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A square crop of ``im`` at a random scale, rotated by a random angle (reflected border), recoloured."""
    crop = _random_crop(im, side, side, rng)
    m = cv2.getRotationMatrix2D((side / 2, side / 2), float(rng.uniform(0, 360)), 1.0)
    return _colourise(cv2.warpAffine(crop, m, (side, side), borderMode=cv2.BORDER_REFLECT), rng)


def _draw_marks(canvas: np.ndarray, rng: np.random.Generator, n_shapes: int, n_texts: int) -> None:
    h, w = canvas.shape[:2]
    for _ in range(n_shapes):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        kind = rng.integers(4)
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if kind == 0:
            cv2.line(canvas, p1, (int(rng.integers(0, w)), int(rng.integers(0, h))), colour, int(rng.integers(1, 4)))
        elif kind == 1:
            p2 = (p1[0] + int(rng.integers(5, w // 2)), p1[1] + int(rng.integers(5, h // 2)))
            cv2.rectangle(canvas, p1, p2, colour, int(rng.choice([-1, 1, 2])))
        elif kind == 2:
            cv2.circle(canvas, p1, int(rng.integers(3, max(4, w // 5))), colour, int(rng.choice([-1, 1, 2])))
        else:
            pts = rng.integers(0, [w, h], size=(int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(canvas, [pts], colour)
    for _ in range(n_texts):
        text = "".join(rng.choice(list("ABCDEFGHKMNPRSTWXYZ0123456789&#@%"), size=int(rng.integers(2, 6))))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.putText(
            canvas,
            text,
            (int(rng.integers(0, w // 2)), int(rng.integers(h // 4, h))),
            int(rng.choice([0, 1, 2, 3, 4, 6, 7])),
            float(rng.uniform(0.4, 1.2)),
            colour,
            int(rng.integers(1, 3)),
        )


def collage_instances(
    n: int, side: int, photos: list[np.ndarray], min_texture: float, rng: np.random.Generator
) -> list[Instance]:
    """``n`` unique training instances, each a collage of patches of ``photos`` with drawn shapes and text."""
    out: list[Instance] = []
    while len(out) < n:
        f = rng.uniform(0.72, 0.95, size=2)
        h, w = int(side * f[1]), int(side * f[0])
        canvas = _colourise(_random_crop(photos[rng.integers(len(photos))], h, w, rng), rng)
        for _ in range(rng.integers(3, 7)):
            ps = int(min(h, w) * rng.uniform(0.25, 0.6))
            patch = _rotated_patch(photos[rng.integers(len(photos))], ps, rng)
            y, x = rng.integers(0, h - ps + 1), rng.integers(0, w - ps + 1)
            canvas[y : y + ps, x : x + ps] = patch
        _draw_marks(canvas, rng, int(rng.integers(1, 5)), int(rng.integers(0, 2)))
        if texture(canvas) < min_texture:
            continue
        out.append(Instance(-1, "collage", (0, 0, w, h), canvas))
    return out


def _random_canvas_shape(cfg: DemoConfig, rng: np.random.Generator) -> tuple[int, int]:
    if rng.random() < 0.6:
        return cfg.image_short_side, cfg.image_long_side  # landscape (h, w)
    return cfg.image_long_side, cfg.image_short_side


def _channel_lut(patch: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``patch`` (H, W, 3) uint8 mapped through one 256-entry table per channel, ``lut`` (256, 3) uint8."""
    return cv2.LUT(patch, lut.reshape(1, 256, 3))


def _colourise(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-channel gains in [0.5, 1.3), clipped to [0, 255] and truncated to uint8. The result depends only on the
    pixel's value and channel, so it is computed once per value (a 256 x 3 table, the same float64 arithmetic as
    on every pixel) and looked up: the same bytes as the per-pixel computation, in a fifth of the time (profiled)."""
    gains = rng.uniform(0.5, 1.3, size=3)
    values = np.arange(256, dtype=np.float32)[:, None]
    return _channel_lut(patch, np.clip(values * gains, 0, 255).astype(np.uint8))


def _random_crop(im: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    s = rng.uniform(0.6, 1.6) * max(h / im.shape[0], w / im.shape[1])
    big = cv2.resize(
        im, (max(w, int(im.shape[1] * s) + 1), max(h, int(im.shape[0] * s) + 1)), interpolation=cv2.INTER_LINEAR
    )
    y = rng.integers(0, big.shape[0] - h + 1)
    x = rng.integers(0, big.shape[1] - w + 1)
    return big[y : y + h, x : x + w].copy()


def make_background(
    shape: tuple[int, int], backgrounds: list[np.ndarray], rng: np.random.Generator, contrast: float = 1.0
) -> np.ndarray:
    """Clutter: a crop of a background photo, pasted patches of others, and random shapes."""
    h, w = shape
    canvas = _colourise(_random_crop(backgrounds[rng.integers(len(backgrounds))], h, w, rng), rng)
    for _ in range(rng.integers(2, 6)):
        ph, pw = int(h * rng.uniform(0.2, 0.6)), int(w * rng.uniform(0.2, 0.6))
        patch = _colourise(_random_crop(backgrounds[rng.integers(len(backgrounds))], ph, pw, rng), rng)
        y, x = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
        canvas[y : y + ph, x : x + pw] = patch
    for _ in range(rng.integers(4, 14)):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        kind = rng.integers(3)
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if kind == 0:
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(canvas, p1, p2, colour, int(rng.integers(1, 4)))
        elif kind == 1:
            p2 = (p1[0] + int(rng.integers(10, 80)), p1[1] + int(rng.integers(10, 80)))
            cv2.rectangle(canvas, p1, p2, colour, int(rng.choice([-1, 2])))
        else:
            cv2.circle(canvas, p1, int(rng.integers(5, 40)), colour, int(rng.choice([-1, 2])))
    return _contrast(canvas, contrast) if contrast != 1.0 else canvas


def _contrast(canvas: np.ndarray, contrast: float) -> np.ndarray:
    """Per channel, float32: clip(mean + contrast x (value - mean), 0, 255) truncated to uint8, with the channel's
    mean over the image; computed for the 256 values once (a table, as in ``_colourise``), the same bytes."""
    mean = canvas.astype(np.float32).mean(axis=(0, 1))[None, :]
    values = np.arange(256, dtype=np.float32)[:, None]
    return _channel_lut(canvas, np.clip(mean + contrast * (values - mean), 0, 255).astype(np.uint8))


@dataclass
class View:
    """How an image shows its instance (:func:`sample_view`, :func:`render`): ``rotation`` in degrees, perspective
    ``tilt`` (each corner moved by up to ``tilt`` times the instance's side), ``rel_size`` (instance short side / image
    short side), Gaussian ``blur`` sigma in pixels (applied above 0.3), ``truncate`` (centred near a border, partly out
    of frame), ``occlude`` (one or two occluders over it), and the lighting's ``gain`` and ``gamma``."""

    rotation: float  # degrees
    tilt: float  # relative corner displacement
    rel_size: float  # instance short side / image short side
    blur: float  # gaussian sigma
    truncate: bool
    occlude: bool
    gain: float
    gamma: float


def sample_view(rng: np.random.Generator, cfg: DemoConfig, query: bool) -> View:
    """A random :class:`View` drawn from ``rng``. A query's (``query``) is mild: rotation ~ N(0, 5) degrees, tilt below
    0.05, relative size 0.5-0.75, blur below 0.6, neither truncated nor occluded. A database image's rotation, tilt and
    blur grow with a Beta(1.2, 1.6) severity; it is small (``cfg.small_size``) in ``cfg.small_fraction`` of views (else
    ``cfg.normal_size``), truncated in 25% and occluded in 35% of them."""
    if query:
        return View(
            rotation=float(rng.normal(0, 5)),
            tilt=float(rng.uniform(0, 0.05)),
            rel_size=float(rng.uniform(0.5, 0.75)),
            blur=float(rng.uniform(0, 0.6)),
            truncate=False,
            occlude=False,
            gain=float(rng.uniform(0.85, 1.15)),
            gamma=float(rng.uniform(0.9, 1.1)),
        )
    severity = float(rng.beta(1.2, 1.6))
    small = rng.random() < cfg.small_fraction
    return View(
        rotation=float(rng.normal(0, 1) * 45 * severity),
        tilt=float(rng.uniform(0, 0.3) * severity),
        rel_size=float(rng.uniform(*cfg.small_size) if small else rng.uniform(*cfg.normal_size)),
        blur=float(rng.uniform(0, 2.5) * severity),
        truncate=bool(rng.random() < 0.25),
        occlude=bool(rng.random() < 0.35),
        gain=float(rng.uniform(0.55, 1.45)),
        gamma=float(rng.uniform(0.7, 1.4)),
    )


def _quad_area(q: np.ndarray) -> float:
    x, y = q[:, 0], q[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def render(
    canvas: np.ndarray, patch: np.ndarray, view: View, backgrounds: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Composite ``patch`` into ``canvas`` under ``view``; return the image and the instance geometry."""
    h, w = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    side = view.rel_size * min(h, w)
    s = side / min(ph, pw)
    if max(ph, pw) * s > 0.95 * max(h, w):  # keep elongated instances inside the frame
        s = 0.95 * max(h, w) / max(ph, pw)
    half = np.array([pw, ph], np.float64) * s / 2
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * half
    corners += rng.uniform(-1, 1, size=(4, 2)) * view.tilt * 2 * half  # perspective
    a = np.deg2rad(view.rotation)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    corners = corners @ rot.T
    ext = np.abs(corners).max(axis=0)
    if view.truncate:
        # centre near a border so that part of the instance falls outside the image
        cx = rng.choice([rng.uniform(-0.1, 0.35), rng.uniform(0.65, 1.1)]) * w
        cy = rng.uniform(0.2, 0.8) * h
    else:
        cx = rng.uniform(min(ext[0], w / 2), max(w - ext[0], w / 2))
        cy = rng.uniform(min(ext[1], h / 2), max(h - ext[1], h / 2))
    quad = corners + np.array([cx, cy])
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    H = cv2.getPerspectiveTransform(src, quad.astype(np.float32))

    lit = patch.astype(np.float32) / 255.0
    lit = np.clip(view.gain * lit**view.gamma * rng.uniform(0.85, 1.15, size=3), 0, 1)
    warped = cv2.warpPerspective((lit * 255).astype(np.uint8), H, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.uint8), H, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
    out = canvas.copy()
    np.copyto(out, warped, where=mask[:, :, None])  # out[mask] = warped[mask], without the gathers

    occluded = np.zeros((h, w), bool)
    if view.occlude:
        x1, y1 = np.clip(quad.min(axis=0), 0, [w, h]).astype(int)
        x2, y2 = np.clip(quad.max(axis=0), 0, [w, h]).astype(int)
        for _ in range(rng.integers(1, 3)):
            ow = int(max(4, (x2 - x1) * rng.uniform(0.2, 0.7)))
            oh = int(max(4, (y2 - y1) * rng.uniform(0.2, 0.7)))
            ox = int(rng.integers(max(0, x1 - ow // 2), max(1, min(w - ow, x2 - ow // 2) + 1)))
            oy = int(rng.integers(max(0, y1 - oh // 2), max(1, min(h - oh, y2 - oh // 2) + 1)))
            ow, oh = min(ow, w - ox), min(oh, h - oy)
            occ = _colourise(_random_crop(backgrounds[rng.integers(len(backgrounds))], oh, ow, rng), rng)
            if rng.random() < 0.5:
                out[oy : oy + oh, ox : ox + ow] = occ
                occluded[oy : oy + oh, ox : ox + ow] = True
            else:
                ell = np.zeros((oh, ow), np.uint8)
                cv2.ellipse(ell, (ow // 2, oh // 2), (ow // 2, oh // 2), 0, 0, 360, 1, -1)
                e = ell.astype(bool)
                out[oy : oy + oh, ox : ox + ow][e] = occ[e]
                occluded[oy : oy + oh, ox : ox + ow] |= e
    if view.blur > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), view.blur)
    noise = rng.normal(0, rng.uniform(0, 4), size=out.shape)  # float64
    noise += out  # the pixel + noise in float64, in place (the same values as out.astype(np.float32) + noise)
    out = np.clip(noise, 0, 255, out=noise).astype(np.uint8)

    visible = float((mask & ~occluded).sum()) / max(_quad_area(quad), 1.0)
    xs, ys = np.clip(quad[:, 0], 0, w), np.clip(quad[:, 1], 0, h)
    return out, {
        "visible": min(1.0, visible),
        "bbx": [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())],
        "rotation": view.rotation,
        "tilt": view.tilt,
        "rel_size": min(ph, pw) * s / min(h, w),
        "blur": view.blur,
    }


def label_view(geom: dict[str, float], rule: LabelRule) -> str:
    """'easy', 'hard' or 'junk' for an image showing the query's instance (see the module docstring)."""
    if geom["visible"] < rule.junk_below:
        return "junk"
    mild = (
        geom["visible"] >= rule.easy_visible
        and abs(geom["rotation"]) <= rule.easy_max_rotation
        and geom["tilt"] <= rule.easy_max_tilt
        and geom["blur"] <= rule.easy_max_blur
        and geom["rel_size"] >= rule.easy_min_rel_size
    )
    return "easy" if mild else "hard"


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def _db_plan(
    instances: list[Instance], size: SplitSize, cfg: DemoConfig, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Which instance each database image shows and which images share a background."""
    shows = [inst.id for inst in instances for _ in range(size.views)] + [-1] * size.distractors
    order = rng.permutation(len(shows))
    plan = [{"instance": shows[i], "background": None} for i in order]
    # pair some images of different instances (or an instance and a distractor) on one background
    views = [i for i, p in enumerate(plan) if p["instance"] >= 0]
    n_pairs = int(len(views) * cfg.shared_background / 2)
    pool = list(rng.permutation(len(plan)))
    bg = 0
    paired: set[int] = set()
    for a in rng.permutation(views)[: 2 * n_pairs]:
        if a in paired:
            continue
        for j, b in enumerate(pool):
            if b != a and b not in paired and plan[b]["instance"] != plan[a]["instance"]:
                plan[a]["background"] = plan[b]["background"] = bg
                paired.update((a, b))
                pool.pop(j)
                bg += 1
                break
    for p in plan:
        if p["background"] is None:
            p["background"] = bg
            bg += 1
    return plan


def generate_split(
    out_dir: Path,
    prefix: str,
    instances: list[Instance],
    size: SplitSize,
    backgrounds: list[np.ndarray],
    cfg: DemoConfig,
    rng: np.random.Generator,
    labelled: bool,
) -> dict[str, Any]:
    """Render one split into ``out_dir/jpg`` and return its ground truth (revisitop structure)."""
    jpg = out_dir / "jpg"
    jpg.mkdir(parents=True, exist_ok=True)
    plan = _db_plan(instances, size, cfg, rng)
    bg_seeds = rng.integers(0, 2**63 - 1, size=max(p["background"] for p in plan) + 1)
    by_id = {inst.id: inst for inst in instances}
    imlist, labels, geoms = [], [], []
    for i, p in enumerate(plan):
        brng = np.random.default_rng(bg_seeds[p["background"]])
        shape = _random_canvas_shape(cfg, brng)
        canvas = make_background(shape, backgrounds, brng, cfg.background_contrast)
        if p["instance"] >= 0:
            view = sample_view(rng, cfg, query=False)
            img, geom = render(canvas, by_id[p["instance"]].patch, view, backgrounds, rng)
        else:
            img, geom = canvas, None
        name = f"{prefix}_db_{i:05d}"
        _write_jpeg(jpg / f"{name}.jpg", img)
        imlist.append(name)
        labels.append(p["instance"])
        geoms.append(geom)

    qimlist, gnd = [], []
    if size.queries:
        q_inst = [instances[i % len(instances)].id for i in rng.permutation(len(instances))]
        while len(q_inst) < size.queries:
            q_inst += [inst.id for inst in instances]
        for qi, inst_id in enumerate(q_inst[: size.queries]):
            canvas = make_background(_random_canvas_shape(cfg, rng), backgrounds, rng, cfg.background_contrast)
            img, geom = render(canvas, by_id[inst_id].patch, sample_view(rng, cfg, query=True), backgrounds, rng)
            name = f"{prefix}_query_{qi:03d}"
            _write_jpeg(jpg / f"{name}.jpg", img)
            qimlist.append(name)
            entry: dict[str, Any] = {"easy": [], "hard": [], "junk": [], "bbx": [round(v, 1) for v in geom["bbx"]]}
            for j, (lab, g) in enumerate(zip(labels, geoms)):
                if lab == inst_id:
                    entry[label_view(g, cfg.labels)].append(j)
            entry["instance"] = inst_id
            gnd.append(entry)
    out: dict[str, Any] = {"imlist": imlist, "qimlist": qimlist, "gnd": gnd}
    if labelled:
        out["labels"] = labels
    out["instances"] = [{"id": inst.id, "photo": inst.photo, "box": list(inst.box)} for inst in instances]
    return out


def _write_split(args: tuple) -> tuple[str, dict[str, Any]]:
    """Render one split and write its ``gnd.json`` (a process-pool task: everything it needs is in ``args``)."""
    out_root, name, inst, size, labelled, seq, backgrounds, cfg = args
    gt = generate_split(
        out_root / name, name.replace("-", "_"), inst, size, backgrounds, cfg, np.random.default_rng(seq), labelled
    )
    (out_root / name / "gnd.json").write_text(json.dumps(gt))
    counts = {k: sum(len(g[k]) for g in gt["gnd"]) for k in ("easy", "hard", "junk")}
    return name, {
        "db": len(gt["imlist"]),
        "queries": len(gt["qimlist"]),
        "instances": len(inst),
        "photos": sorted({i.photo for i in inst}),
        "labels": counts,
    }


def generate_demo(out_root: str | Path, cfg: DemoConfig, workers: int = 1) -> dict[str, Any]:
    """Write ``demo``, ``demo-val`` and ``demo-train`` under ``out_root``; return a summary for the manifest.

    Each split draws from its own random stream, so ``workers`` > 1 renders the splits in parallel processes
    (at most 3) and writes byte-identical files to a serial run."""

    out_root = Path(out_root)
    # independent streams: the test split depends only on the seed and its own settings, so changing the
    # training or validation split never changes the test data
    seeds = np.random.SeedSequence(cfg.seed).spawn(6)
    test_rng, pool_rng = np.random.default_rng(seeds[0]), np.random.default_rng(seeds[1])
    backgrounds = [load_photo(n) for n in BACKGROUND_PHOTOS]
    test_inst = cut_instances({n: load_photo(n) for n in TEST_PHOTOS}, cfg.region_side, cfg.min_texture, test_rng)
    test_inst = [test_inst[i] for i in sorted(test_rng.permutation(len(test_inst))[: cfg.test.instances])]
    val_pool = cut_instances({n: load_photo(n) for n in VAL_PHOTOS}, cfg.train_region_side, cfg.min_texture, pool_rng)
    val_inst = [val_pool[i] for i in sorted(pool_rng.permutation(len(val_pool))[: cfg.val.instances])]
    collage_photos = [load_photo(n) for n in TRAIN_PHOTOS] + backgrounds
    train_inst = collage_instances(
        cfg.train.instances, cfg.train_region_side, collage_photos, cfg.min_texture, np.random.default_rng(seeds[5])
    )
    for k, inst in enumerate(test_inst + val_inst + train_inst):
        inst.id = k
    tasks = [
        (out_root, name, inst, size, labelled, seq, backgrounds, cfg)
        for name, inst, size, labelled, seq in (
            ("demo", test_inst, cfg.test, False, seeds[2]),
            ("demo-val", val_inst, cfg.val, False, seeds[3]),
            ("demo-train", train_inst, cfg.train, True, seeds[4]),
        )
    ]
    summary: dict[str, Any] = {"generator_version": GENERATOR_VERSION, "splits": {}}
    if workers > 1:
        # processes, not threads: rendering is mostly Python and NumPy calls that hold the GIL. fork, not spawn: a
        # Snakemake script cannot be re-imported as __main__ by a spawned child
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=get_context("fork")) as pool:
            done = dict(pool.map(_write_split, tasks))
    else:
        done = dict(map(_write_split, tasks))
    for _, name, *_ in tasks:
        summary["splits"][name] = done[name]
        log.info("%s: %s", name, done[name])
    return summary

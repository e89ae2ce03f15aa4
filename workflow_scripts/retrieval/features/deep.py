"""Extraction with the deep backbones (``dinov2``, ``resnet``): local descriptors through the AMES detector, the
strongest K by weight over all scales, and a global descriptor per image, both from one forward pass per scale.

Pre-processing as AMES/CVNet: OpenCV-order BGR in [0, 1], mean (0.406, 0.456, 0.485) and std (0.225, 0.224, 0.229)
in BGR order, the channels then flipped to RGB for the weights trained on RGB: DINOv2's, and a ResNet's as
``channels`` says (``auto``: RGB for torchvision-named weights unless their fc is square, CVNet's 2048 -> 2048 head
renamed; BGR for CVNet's and random weights); the image (after the query crop) is resized so that its
long side is ``image_size`` times the scale, INTER_AREA when shrinking and INTER_LINEAR when enlarging; for the ViT
each side becomes 14 * round(side / 14) (at least one patch). Positions are stored in pixels of the full original
image (patch or receptive-field centres mapped back through the resize and the crop): the ResNet's receptive-field
centres as pixel centres (pixel i at i, SIFT's convention), DINOv2's patch centres in continuous coordinates (14 j + 7
at scale 1; 0.5 px from the other convention).

Global descriptors: ``dinov2`` the L2-normalised CLS token averaged over scales and re-normalised; ``resnet`` GeM
(a CVNet checkpoint's learned p, else 3) or SuperGlobal's modules, each a switch with the paper's constant: ``gemp`` (GeM+ p 4.6), ``rgem`` (regional
GeM p 2.5, 5x5), ``sgem`` (max over scales instead of the mean), ``relup`` (ReLU+ 0.014); each scale's pooled vector
is L2-normalised and passed through the 2048 -> 2048 head of CVNet checkpoints (``model.head: fc``).

Weights: ``checkpoint`` is a state-dict file (the official layout, or a dict with key ``state``/``model``/
``state_dict``), ``random`` (seeded random initialisation: tests only, never reported), or, for ``dinov2`` only,
null: the torch hub cache (downloaded there when online). Every checkpoint loads with ``weights_only=True``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from retrieval.data.download import OfflineError
from retrieval.features.backbones.detector import Detector, no_detector
from retrieval.features.backbones.pooling import RELUP_ALPHA, gem, rgem, sgem
from retrieval.features.backbones.resnet import RF, ResNet, cvnet_gem_p, cvnet_to_torchvision
from retrieval.features.backbones.vit import PATCH, DinoV2, ViTConfig
from retrieval.features.positions import pixel_centres_back
from retrieval.runtime import resolve_device, state_digest, torch_load_problem

log = logging.getLogger(__name__)


MEAN_BGR = np.array([0.406, 0.456, 0.485], np.float32)


STD_BGR = np.array([0.225, 0.224, 0.229], np.float32)


BACKBONES = ("dinov2", "resnet")


@dataclass(frozen=True)
class DeepConfig:
    """One deep extraction (config ``extract.dinov2`` / ``extract.resnet``): ``backbone`` dinov2 or resnet;
    ``checkpoint`` a state-dict file, ``random`` (tests only) or None (dinov2 only: the torch hub cache); ``detector``
    the AMES detector's state-dict file (None: each feature weighted by its L2 norm, the official fallback);
    ``image_size`` the long side in pixels at scale 1; ``scales`` the resize factors; ``k`` the local descriptors kept
    per image (strongest weight first, over all scales); ``device``; ``seed`` of ``checkpoint: random``; ``model``:
    ``ViTConfig`` fields (dinov2) or depth / head / fc_dim / width (resnet); ``pooling``: the resnet global descriptor's
    switches gemp, rgem, sgem, relup (SuperGlobal, Shao et al., ICCV 2023); ``channels`` (resnet): the channel order
    the network is given, ``rgb``, ``bgr`` or ``auto`` (:class:`DeepExtractor`). ValueError for another
    ``channels``."""

    backbone: str
    checkpoint: str | None = None
    detector: str | None = None
    image_size: int = 518
    scales: tuple[float, ...] = (1.0,)
    k: int = 700
    device: str = "auto"
    seed: int = 0  # only for checkpoint: random
    model: dict[str, Any] = field(
        default_factory=dict
    )  # variant / registers (dinov2), depth / head (resnet), tiny sizes
    pooling: dict[str, Any] = field(default_factory=dict)  # resnet switches: gemp, rgem, sgem, relup
    channels: str = "auto"  # resnet: auto | rgb | bgr (DINOv2 always takes RGB)

    def __post_init__(self) -> None:
        if self.channels not in ("auto", "rgb", "bgr"):
            raise ValueError(f"extract.{self.backbone}.channels: '{self.channels}' is not one of auto, rgb, bgr")

    @classmethod
    def from_dict(cls, backbone: str, d: dict[str, Any]) -> "DeepConfig":
        """The configuration of ``backbone`` from its config mapping ``d``, ``scales`` made a tuple of floats (default
        (1.0,)); TypeError for a key that is not a field."""
        d = dict(d)
        d["scales"] = tuple(float(s) for s in d.get("scales", (1.0,)))
        return cls(backbone=backbone, **d)


# where a checkpoint may hold its state dict: ours and torchvision's at the top; DINOv2 / AMES 'state', 'model' or
# 'state_dict'; pycls's and CVNet's (core/checkpoint.py) 'model_state'
STATE_KEYS = ("state", "model", "state_dict", "model_state")


def _read_state(path: str, what: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report the file whatever the unpickling error
        raise ValueError(f"{p}: not a loadable {what} state dict ({torch_load_problem(p, e)})") from None
    for key in STATE_KEYS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        # what it holds instead: the keys that are not tensors (helper-145's dict under another key was not named)
        found = (
            "; its top level holds "
            + ", ".join(
                f"{k!r} ({type(v).__name__})" for k, v in list(obj.items())[:6] if not isinstance(v, torch.Tensor)
            )
            if isinstance(obj, dict)
            else f"; it holds a {type(obj).__name__}"
        )
        raise ValueError(
            f"{p}: expected a state dict of tensors (optionally under {', '.join(repr(k) for k in STATE_KEYS)}){found}"
        )
    return obj


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module``; ValueError naming ``source`` (the checkpoint) and the first keys that are
    missing, unexpected or of another shape (a KeyError until 2026-12-07, which a job printed as a whole traceback
    ending in the quoted message, helper-140) (torch listed every shape mismatch, hundreds of lines, without the
    file: a ViT-S checkpoint under the default ``variant: vitb14``, a new user's trial)."""
    expected = module.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} for {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if wrong:
        only_fc = all(w.startswith("fc.") for w in wrong)  # a classifier (torchvision's 1000 x 2048) under head: fc
        raise ValueError(
            f"{source}: state dict does not match the {type(module).__name__} configuration: {len(wrong)} tensors "
            f"of another shape, e.g. {'; '.join(wrong[:3])} (the checkpoint's shape first: "
            + (
                "its fc is not CVNet's global head, a classifier such as torchvision's ImageNet one? set "
                "extract.resnet.model.head: none to pool conv5 without it)"
                if only_fc
                else "another model size or variant?)"
            )
        )
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{source}: state dict does not match the {type(module).__name__} configuration; "
            f"missing {missing[:6]}, unexpected {unexpected[:6]}"
        )


def _random_init(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim > 1 or "token" in name or "pos_embed" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif name.endswith("gamma"):
                p.fill_(1.0)


class DeepExtractor:
    """Local and global descriptors of one image with a deep backbone (:class:`DeepConfig`), one forward pass per scale:
    DINOv2's patch tokens or the ResNet's (CVNet's) conv4 map through the AMES detector (Suma et al., ECCV 2024) for the
    local ones, DINOv2's CLS token or the ResNet's GeM / SuperGlobal pooling for the global one.

    Construction loads the network and the detector onto ``cfg.device``. ValueError for an unknown backbone, a resnet
    without ``checkpoint``, or a file that is not a state dict of tensors; FileNotFoundError naming a missing checkpoint
    or detector file; ValueError naming the source whose state dict does not match the network;
    ``download.OfflineError`` (a RuntimeError, said without a traceback) when dinov2's hub weights are neither cached
    nor downloadable; RuntimeError when an explicit CUDA device is not there (naming ``device_key``)."""

    def __init__(self, cfg: DeepConfig, device_key: str | None = None):
        """``device_key``: the configuration key of ``cfg.device``, named when that device is missing (default
        ``extract.{backbone}.device``)."""

        if cfg.backbone not in BACKBONES:
            raise ValueError(f"extract.backbone {cfg.backbone!r}: one of sift, {', '.join(BACKBONES)}")
        self.cfg = cfg
        self.device = resolve_device(cfg.device, device_key or f"extract.{cfg.backbone}.device")
        torch.manual_seed(cfg.seed)
        if cfg.backbone == "dinov2":
            vc = ViTConfig(**cfg.model)
            self.net = DinoV2(vc)
            if cfg.checkpoint is None:
                try:
                    state = torch.hub.load_state_dict_from_url(vc.hub_url, map_location="cpu", weights_only=True)
                except Exception as e:  # noqa: BLE001
                    # said in its own words, without a traceback: a refusal, not a crash (helper-145)
                    raise OfflineError(
                        f"extract.dinov2.checkpoint is null and {vc.hub_url} is neither in the torch hub "
                        f"cache (as {Path(torch.hub.get_dir()) / 'checkpoints' / vc.hub_url.rsplit('/', 1)[-1]}) "
                        f"nor downloadable ({type(e).__name__}: {e}); set extract.dinov2.checkpoint to the file "
                        "(versioned by its content), or put it there (trusted to be that URL's file: replacing it "
                        "later re-extracts nothing)"
                    ) from None  # the cause is in the message: the chained socket errors buried it
                self.source = vc.hub_url
            local_dim = self.net.embed_dim
        else:
            m = dict(cfg.model)
            head = m.pop("head", "none")
            self.net = ResNet(
                depth=int(m.pop("depth", 101)),
                fc_dim=None if head == "none" else int(m.pop("fc_dim", 2048)),
                relup_alpha=RELUP_ALPHA if cfg.pooling.get("relup") else None,
                width=int(m.pop("width", 64)),
            )
            if cfg.checkpoint is None:
                raise ValueError(
                    "extract.resnet.checkpoint: give a torchvision or CVNet state-dict file (or 'random' for tests)"
                )
            local_dim = self.net.local_dim
        self.gem_p = 3.0  # GeM's exponent without GeM+: 3, or a CVNet checkpoint's learned one
        # the channel order the weights were trained on: DINOv2's and torchvision's RGB, CVNet's (pycls) BGR; random
        # weights keep BGR (tests)
        self.rgb = cfg.backbone == "dinov2"
        if cfg.checkpoint == "random":
            _random_init(self.net, cfg.seed)
            self.source = f"random (seed {cfg.seed})"
            log.warning(
                "%s: RANDOM weights (checkpoint: random) - for tests only, never a reported number", cfg.backbone
            )
        elif cfg.checkpoint is not None:
            state = _read_state(cfg.checkpoint, cfg.backbone)
            if cfg.backbone == "resnet" and any(k.startswith(("encoder_q.", "stem.", "s1.")) for k in state):
                self.gem_p = cvnet_gem_p(state) or self.gem_p  # CVNet's learned p, pooled with when gemp is off
                state = cvnet_to_torchvision(state)
            elif cfg.backbone == "resnet":
                # torchvision's names: torchvision's ImageNet weights, trained on RGB (given BGR until resnet 3),
                # unless the fc is square, CVNet's 2048 -> 2048 head (torchvision's classifier is 1000 x 2048): a
                # CVNet checkpoint renamed (cvnet_to_torchvision)
                fc = state.get("fc.weight")
                self.rgb = fc is None or fc.ndim != 2 or fc.shape[0] != fc.shape[1]
                if not self.rgb and cfg.channels == "auto":
                    log.info(
                        "resnet: %s has torchvision's names and a square fc, taken for a CVNet checkpoint renamed "
                        "(CVNet's global head is 2048 -> 2048): given BGR, as CVNet was trained "
                        "(extract.resnet.channels: rgb for RGB-trained weights)",
                        cfg.checkpoint,
                    )
            self.source = str(cfg.checkpoint)
        if cfg.backbone == "resnet" and cfg.channels != "auto":
            self.rgb = cfg.channels == "rgb"
        elif cfg.backbone == "resnet" and self.rgb:
            log.info(
                "resnet: %s has torchvision's names and no CVNet head: given RGB, as torchvision's ImageNet weights "
                "were trained (extract.resnet.channels: bgr for BGR-trained weights)",
                cfg.checkpoint,
            )
        if cfg.checkpoint != "random":
            if cfg.backbone == "resnet" and self.net.fc is None:
                state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # a classifier head is not used
            _load(self.net, state, self.source)
        self.detector = None
        if cfg.detector:
            self.detector = Detector(local_dim)
            _load(self.detector, _read_state(cfg.detector, "detector"), cfg.detector)
        self.local_dim = local_dim
        self.global_dim = (
            self.net.embed_dim
            if cfg.backbone == "dinov2"
            else (self.net.fc.out_features if self.net.fc is not None else self.net.global_dim)
        )
        self.net.eval().to(self.device)
        if self.detector is not None:
            self.detector.eval().to(self.device)

    def describe(self) -> dict[str, Any]:
        """What extracted the features (the feature-cache pack's ``model`` attribute, and the log): backbone, weights source,
        ``weights_digest`` of the network (:func:`~retrieval.runtime.state_digest`), detector file, local and global
        dimensions, device, ``channels`` (``rgb`` or ``bgr``: the order the network is given) and, for resnet,
        ``gem_p`` (GeM's exponent when GeM+ is off)."""
        return {
            "backbone": self.cfg.backbone,
            "weights": self.source,
            "weights_digest": state_digest(self.net),
            "detector": self.cfg.detector,
            "local_dim": self.local_dim,
            "global_dim": self.global_dim,
            "device": self.device,
            "channels": "rgb" if self.rgb else "bgr",
            # GeM's exponent where it is used (GeM+ off): 3, or a CVNet checkpoint's learned one
            **({"gem_p": self.gem_p} if self.cfg.backbone == "resnet" and not self.cfg.pooling.get("gemp") else {}),
        }

    # ------------------------------------------------------------------------------------------ one image
    def _resize(self, img: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
        h, w = img.shape[:2]
        s = scale * self.cfg.image_size / max(h, w)
        if self.cfg.backbone == "dinov2":
            nh, nw = max(1, round(h * s / PATCH)) * PATCH, max(1, round(w * s / PATCH)) * PATCH
        else:
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
        interp = cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR
        return cv2.resize(img, (nw, nh), interpolation=interp), nw / w, nh / h

    def _tensor(self, img: np.ndarray) -> torch.Tensor:
        x = (img.astype(np.float32) / 255.0 - MEAN_BGR) / STD_BGR
        if self.rgb:
            x = x[:, :, ::-1]  # RGB
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)

    @torch.no_grad()
    def extract(self, bgr: np.ndarray, crop: list[int] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Local features and the global descriptor of one image, ``bgr`` (H, W, 3) uint8 in OpenCV's order, cropped
        first to ``crop = [x1, y1, x2, y2]`` (pixels) when given.

        Returns the local-store row, at most ``k`` features, strongest weight first over all scales (ties in scale, then
        row-major position order): ``descriptors`` (n, D) float16 L2-normalised, ``xy`` (n, 2) float32 patch or
        receptive-field centres in pixels of the full original image (resnet: pixel centres, pixel i at i, as
        SIFT's; dinov2: continuous coordinates, pixel i spanning [i, i + 1), as AMES's normalised positions),
        ``scale`` (n,) float32 the scale factor each came from, ``weight`` (n,) float32, ``orientation`` (n,) zeros, ``image_size`` (2,) int32 (width, height) of the full
        image; and the global descriptor (G,) float32, L2-normalised: the per-scale vectors averaged and re-normalised,
        or with ``pooling.sgem`` their maximum (SuperGlobal's scale-GeM)."""
        full_h, full_w = bgr.shape[:2]
        x0 = y0 = 0
        if crop is not None:
            x1, y1, x2, y2 = crop
            bgr, x0, y0 = bgr[y1:y2, x1:x2], x1, y1
        descs, weights, xys, scales, globals_ = [], [], [], [], []
        for scale in self.cfg.scales:
            img, sx, sy = self._resize(bgr, scale)
            out = self.net.forward_features(self._tensor(img))
            fmap = out["patch"] if self.cfg.backbone == "dinov2" else out["local"]
            d, wgt = self.detector(fmap) if self.detector is not None else no_detector(fmap)
            _, c, h, w = d.shape
            descs.append(d[0].reshape(c, -1).T.float().cpu())
            weights.append(wgt[0, 0].reshape(-1).float().cpu())
            ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            if self.cfg.backbone == "dinov2":
                # continuous coordinates (pixel i spans [i, i + 1)): patch j's centre at 14 j + 7, scaled back by s
                cx, cy = (PATCH * jj + PATCH / 2) / sx, (PATCH * ii + PATCH / 2) / sy
            else:
                # pixel centres as SIFT's (pixel i at i): the receptive field's centre is pixel 16 j + off (off 0),
                # mapped back as (i + 0.5) / s - 0.5 (i / s until resnet 3, a review: 0.9-2.3 px off per scale)
                off = (RF["size"] - 1) / 2 - RF["padding"]
                cx = pixel_centres_back(RF["stride"] * jj + off, sx)
                cy = pixel_centres_back(RF["stride"] * ii + off, sy)
            xys.append(np.stack([cx.ravel(), cy.ravel()], axis=1))
            scales.append(np.full(h * w, scale, np.float32))
            globals_.append(self._global(out))
        desc, weight = torch.cat(descs).numpy(), torch.cat(weights).numpy()
        xy, scl = np.concatenate(xys).astype(np.float32), np.concatenate(scales)
        order = np.lexsort((np.arange(len(weight)), -weight))[: self.cfg.k]  # strongest first, stable
        row = {
            "descriptors": desc[order].astype(np.float16),
            "xy": xy[order] + np.array([x0, y0], np.float32),
            "scale": scl[order],
            "weight": weight[order].astype(np.float32),
            "orientation": np.zeros(len(order), np.float32),
            "image_size": np.array([full_w, full_h], np.int32),
        }
        return row, self._combine(globals_)

    def _global(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cfg.backbone == "dinov2":
            return F.normalize(out["cls"].float(), dim=-1)[0].cpu()
        p = self.cfg.pooling
        x = out["global_map"]
        if p.get("rgem"):
            x = rgem(x, 2.5, 5)
        g = F.normalize(gem(x, 4.6, 1e-8) if p.get("gemp") else gem(x, self.gem_p, 1e-6), dim=-1)
        if self.net.fc is not None:
            g = self.net.fc(g)
        return F.normalize(g.float(), dim=-1)[0].cpu()

    def _combine(self, per_scale: list[torch.Tensor]) -> np.ndarray:
        if self.cfg.backbone == "resnet" and self.cfg.pooling.get("sgem"):
            g = sgem([v[None] for v in per_scale])[0]
        else:
            g = F.normalize(torch.stack(per_scale).mean(0), dim=-1)
        return g.numpy().astype(np.float32)

    def empty(self, entry: dict[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The row and global descriptor of an image that could not be read (``on_bad_image: skip``): no features
        ((0, D) float16 descriptors), ``image_size`` from the list ``entry``'s width and height (0 when absent), and an
        all-zero (G,) float32 global descriptor (an image without features, featureless.py)."""
        e = np.zeros((0,), np.float32)
        return (
            {
                "descriptors": np.zeros((0, self.local_dim), np.float16),
                "xy": np.zeros((0, 2), np.float32),
                "scale": e,
                "weight": e,
                "orientation": e,
                "image_size": np.array([entry.get("width", 0), entry.get("height", 0)], np.int32),
            },
            np.zeros(self.global_dim, np.float32),
        )

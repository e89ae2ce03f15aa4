"""ResNet-50/101 with torchvision's state-dict names (``conv1``, ``bn1``, ``layer{1..4}.{j}.{conv,bn}{1,2,3}``,
``layer{i}.0.downsample.{0,1}``, optional ``fc``), returning what retrieval needs:

- ``local``: the output of the last conv4 (``layer3``) block *before* its ReLU (1024-d, stride 16), as CVNet/AMES
  take it;
- ``global_map``: the conv5 (``layer4``) output after its ReLU (2048-d), for GeM / SuperGlobal pooling.

CVNet checkpoints (pycls naming, ``encoder_q.`` prefix) load through :func:`cvnet_to_torchvision`:

=========================================  =========================================
CVNet key (after removing ``encoder_q.``)  torchvision key
=========================================  =========================================
``stem.conv`` / ``stem.bn``                ``conv1`` / ``bn1``
``s{i}.b{j}.f.a`` / ``.f.a_bn``            ``layer{i}.{j-1}.conv1`` / ``.bn1``
``s{i}.b{j}.f.b`` / ``.f.b_bn``            ``layer{i}.{j-1}.conv2`` / ``.bn2``
``s{i}.b{j}.f.c`` / ``.f.c_bn``            ``layer{i}.{j-1}.conv3`` / ``.bn3``
``s{i}.b{j}.proj`` / ``s{i}.b{j}.bn``      ``layer{i}.{j-1}.downsample.0`` / ``.downsample.1``
``head.fc``                                ``fc`` (the 2048 -> 2048 global head)
``head.pool.p``                            not a weight: the GeM exponent, :func:`cvnet_gem_p`
=========================================  =========================================

Both layouts put the stride on the 3x3 conv. ``relup``: ReLU+ (max(x, alpha)) on the residual outputs of stages
1-3, as SuperGlobal does (its stage-1 inner-activation quirk is not reproduced), for ``global_map`` only: ``local``
comes from the network as trained, with plain ReLU (until 2026-12-02 ReLU+ reached it too).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.features.backbones.pooling import relup

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
RF = {"stride": 16, "size": 291, "padding": 145}  # the conv4 receptive field (CVNet's values, ResNet-101)


class Bottleneck(nn.Module):
    """A ResNet bottleneck with torchvision's names: 1x1 ``conv1`` to ``w_b`` channels, 3x3 ``conv2`` (carrying the
    ``stride``), 1x1 ``conv3`` to ``4 * w_b``, each followed by its BatchNorm, and a ``downsample`` projection (a 1x1
    conv and a BatchNorm) when the stride or the width changes. No ``forward``: :meth:`forward_pre` gives the output
    before the final ReLU."""

    def __init__(self, w_in: int, w_b: int, stride: int):
        super().__init__()
        w_out = 4 * w_b
        self.conv1, self.bn1 = nn.Conv2d(w_in, w_b, 1, bias=False), nn.BatchNorm2d(w_b)
        self.conv2, self.bn2 = nn.Conv2d(w_b, w_b, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(w_b)
        self.conv3, self.bn3 = nn.Conv2d(w_b, w_out, 1, bias=False), nn.BatchNorm2d(w_out)
        self.downsample = None
        if stride != 1 or w_in != w_out:
            self.downsample = nn.Sequential(nn.Conv2d(w_in, w_out, 1, stride=stride, bias=False), nn.BatchNorm2d(w_out))

    def forward_pre(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output before its final activation."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + (x if self.downsample is None else self.downsample(x))


class ResNet(nn.Module):
    """The ResNet-50/101 trunk (``depth``) with torchvision's names, used through :meth:`forward_features`
    (no ``forward``): ``fc_dim`` adds an ``fc`` Linear(2048, ``fc_dim``) head (CVNet's global head; None: none),
    ``relup_alpha`` puts SuperGlobal's ReLU+ on stages 1-3 of the global map (None: ReLU), ``width`` is the stem's (64;
    smaller for tiny test models). ``local_dim`` / ``global_dim``: 1024 / 2048 at width 64. ValueError for a depth other
    than 50 or 101."""

    def __init__(self, depth: int = 101, fc_dim: int | None = None, relup_alpha: float | None = None, width: int = 64):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"resnet depth {depth}: one of {sorted(DEPTHS)}")
        self.relup_alpha = relup_alpha
        self.conv1, self.bn1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width)
        w_in = width
        for i, n in enumerate(DEPTHS[depth]):
            w_b = width * 2**i
            blocks = [
                Bottleneck(w_in if j == 0 else 4 * w_b, w_b, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            w_in = 4 * w_b
        self.local_dim, self.global_dim = w_in // 2, w_in
        self.fc = nn.Linear(w_in, fc_dim) if fc_dim else None

    def _stages(self, x: torch.Tensor, alpha: float | None, last: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Stages 1..``last`` from the stem's output: (the last conv4 block's output before its activation, the
        output of stage ``last``), with ReLU+ of ``alpha`` on the residual outputs of stages 1-3 (None: ReLU)."""
        local = None
        for stage in range(1, last + 1):
            blocks = getattr(self, f"layer{stage}")
            for j, blk in enumerate(blocks):
                pre = blk.forward_pre(x)
                if stage == 3 and j == len(blocks) - 1:
                    local = pre
                x = relup(pre, alpha) if alpha is not None and stage < 4 else F.relu(pre)
        return local, x

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` (B, 3, H, W) float32 normalised BGR -> ``local`` (B, 1024, H/16, W/16) and ``global_map``
        (B, 2048, H/32, W/32) (ResNet-101 widths). ReLU+ is SuperGlobal's change to the *global* descriptor: with
        ``relup_alpha`` set, ``global_map`` comes from a pass with ReLU+ and ``local`` from the network as trained
        (plain ReLU, as AMES extracts CVNet's local features and trained its detector on them), one more pass of
        stages 1-3. Without it, one pass gives both."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        local, global_map = self._stages(x, self.relup_alpha, 4)
        if self.relup_alpha is not None:
            local, _ = self._stages(x, None, 3)
        return {"local": local, "global_map": global_map}


def cvnet_gem_p(state: dict[str, torch.Tensor]) -> float | None:
    """CVNet's learned GeM exponent (``head.pool.p``, trainable, initialised at 3) from a CVNet (pycls) state dict,
    None when it has none (a torchvision checkpoint). SuperGlobal pools with it when GeM+ is off."""
    for key, v in state.items():
        if key.removeprefix("module.").removeprefix("encoder_q.") == "head.pool.p":
            return float(torch.as_tensor(v).reshape(-1)[0])
    return None


def cvnet_to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a CVNet (pycls) state dict to this module's names; unknown keys are a ValueError naming them."""
    out, unknown = {}, []
    for key, v in state.items():
        k = key.removeprefix("module.").removeprefix("encoder_q.")
        if k == "head.pool.p" or k.startswith("localmodel.") or k.startswith("encoder_k."):
            continue
        m = re.fullmatch(r"s(\d)\.b(\d+)\.(.+)", k)
        if k.startswith("stem.conv."):
            out["conv1." + k.split(".", 2)[2]] = v
        elif k.startswith("stem.bn."):
            out["bn1." + k.split(".", 2)[2]] = v
        elif k.startswith("head.fc."):
            out["fc." + k.split(".", 2)[2]] = v
        elif m:
            stage, block, rest = int(m[1]), int(m[2]) - 1, m[3]
            prefix = f"layer{stage}.{block}."
            sub = {
                "f.a.": "conv1.",
                "f.a_bn.": "bn1.",
                "f.b.": "conv2.",
                "f.b_bn.": "bn2.",
                "f.c.": "conv3.",
                "f.c_bn.": "bn3.",
                "proj.": "downsample.0.",
                "bn.": "downsample.1.",
            }
            for a, b in sub.items():
                if rest.startswith(a):
                    out[prefix + b + rest[len(a) :]] = v
                    break
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"CVNet checkpoint: keys without a mapping: {unknown[:8]}")
    return out

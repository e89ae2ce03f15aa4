"""Global pooling of a conv feature map: GeM and SuperGlobal's modules (Shao et al., ICCV 2023).

- ``gem``: (mean_u max(x_u, eps)^p)^(1/p) per channel; GeM+ is gem with p = 4.6 (eps 1e-8);
- ``rgem``: X' = X/2 + R(X)/2 with R the regional p_r-mean over a k x k window (reflection padding, stride 1);
- ``sgem``: the element-wise max of the L2-normalised per-scale descriptors (p_s -> infinity), re-normalised;
- ``relup``: ReLU+ = max(x, alpha), replacing the ReLU of residual outputs in stages 1-3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gem(x: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """GeM pooling (Radenović et al., TPAMI 2018): (B, C, H, W) float -> (B, C), the mean of x^p over the map to the
    power 1/p (p 3: between average pooling, p 1, and max pooling, p -> infinity); values clamped at ``eps`` first,
    so the p-th power of a non-positive activation is defined."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


def rgem(x: torch.Tensor, p: float = 2.5, size: int = 5) -> torch.Tensor:
    """Regional GeM (SuperGlobal, Shao et al., ICCV 2023, the official ``rgem`` module): a feature map ``x`` (B, C,
    H, W) float (non-negative, after a ReLU) -> the same shape, ``x / 2 + R(x) / 2`` with R the p-mean over the
    ``size`` x ``size`` window around each position, ``(1/size^2 sum_window x^p)^(1/p)`` (``p`` 2.5, ``size`` 5:
    the paper's), stride 1, reflection padding (replication where the map is not wider than the padding), computed
    as an Lp-pool of the input scaled by ``size^(-2/p)``."""
    pad = size // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"  # reflection needs a map wider than the padding
    r = F.lp_pool2d(F.pad(x, (pad, pad, pad, pad), mode=mode) / (size * size) ** (1.0 / p), p, size, stride=1)
    return 0.5 * x + 0.5 * r


def sgem(descs: list[torch.Tensor]) -> torch.Tensor:
    """Scale-GeM with p -> infinity (SuperGlobal, Shao et al., ICCV 2023): per-scale global descriptors ``descs``
    (a list of S tensors, each (B, C) float) -> (B, C), the element-wise maximum of the L2-normalised descriptors
    over the scales, L2-normalised again."""
    return F.normalize(torch.stack([F.normalize(d, dim=-1) for d in descs]).amax(dim=0), dim=-1)


RELUP_ALPHA = 0.014  # SuperGlobal's ReLU+ threshold (Shao et al., ICCV 2023, the official code)


def relup(x: torch.Tensor, alpha: float = RELUP_ALPHA) -> torch.Tensor:
    """ReLU+ (SuperGlobal): max(x, alpha), elementwise, any shape."""
    return x.clamp(min=alpha)

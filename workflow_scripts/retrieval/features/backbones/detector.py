"""The AMES detector (``SpatialAttention2d``): on a feature map, a 1x1 conv + BatchNorm gives the local descriptor
(L2-normalised) and ReLU -> 1x1 conv -> Softplus its weight. Checkpoints: a dict with key ``state`` holding
``conv1.*``, ``bn.*``, ``conv2.*`` (``dinov2_detector.pt``, ``cvnet_detector.pt``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Detector(nn.Module):
    """AMES's local-feature detector (the official ``SpatialAttention2d``) on a (B, ``dim``, H, W) map: 1x1 ``conv1`` +
    ``bn`` give the descriptors, ReLU -> 1x1 ``conv2`` -> Softplus their weights; loads the ``conv1.*``, ``bn.*``,
    ``conv2.*`` weights of ``dinov2_detector.pt`` / ``cvnet_detector.pt``."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.bn = nn.BatchNorm2d(dim)
        self.conv2 = nn.Conv2d(dim, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D, H, W) -> descriptors (B, D, H, W) L2-normalised, weights (B, 1, H, W)."""
        x = self.bn(self.conv1(x))
        desc = F.normalize(x, p=2, dim=1, eps=1e-15)
        return desc, F.softplus(self.conv2(F.relu(x)), beta=1, threshold=20)


def no_detector(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AMES's extraction without a detector (the official code's fallback, Suma et al., ECCV 2024: the raw feature
    as descriptor, its L2 norm as weight): a feature map ``x`` (B, C, H, W) float -> descriptors (B, C, H, W), the
    feature L2-normalised over C (stored so), and weights (B, 1, H, W), its L2 norm; :class:`Detector`'s output
    pair."""
    norm = x.norm(dim=1, keepdim=True)
    return x / norm.clamp_min(1e-15), norm

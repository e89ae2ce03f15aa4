"""DINOv2 vision transformers (Oquab et al. 2023; Darcet et al. 2024 for registers), written so that the official
``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth`` state dicts load with ``strict=True``.

Names: ``cls_token``, ``pos_embed`` (1, 1 + 37*37, D: trained at 518 px), ``register_tokens`` (1, R, D),
``mask_token`` (1, D), ``patch_embed.proj``, ``blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1,
mlp.fc2 | mlp.w12, mlp.w3, ls2.gamma}``, ``norm``. Position embeddings are interpolated (bicubic) to any grid; the
register models with antialiasing and no offset, the others without antialiasing and with the 0.1 offset, as the
official hub entries build them. Register tokens go after the CLS token and get no position embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 14
VARIANTS = {  # embed dim, depth, heads, SwiGLU
    "vits14": (384, 12, 6, False),
    "vitb14": (768, 12, 12, False),
    "vitl14": (1024, 24, 16, False),
    "vitg14": (1536, 40, 24, True),
}
HUB_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/dinov2_{arch}{reg}_pretrain.pth"


@dataclass(frozen=True)
class ViTConfig:
    """A DINOv2 ViT (Oquab et al. 2023): ``variant`` one of vits14, vitb14, vitl14, vitg14; ``registers`` the register
    tokens (4 in the ``_reg4`` models, Darcet et al. 2024; 0: none); ``img_size`` the side in pixels the position
    embeddings were trained at (518: a 37 x 37 grid); ``embed_dim`` / ``depth`` / ``heads`` override the variant's (tiny
    test models; None: the variant's)."""

    variant: str = "vitb14"
    registers: int = 4
    img_size: int = 518  # the size the position embeddings were trained at
    # overrides for tiny test models (None: the variant's value)
    embed_dim: int | None = None
    depth: int | None = None
    heads: int | None = None

    def dims(self) -> tuple[int, int, int, bool]:
        """(embed dim, depth, heads, SwiGLU) of the variant, overrides applied; ValueError naming the variant when it is
        not in VARIANTS."""
        if self.variant not in VARIANTS:
            raise ValueError(f"dinov2 variant {self.variant!r}: one of {sorted(VARIANTS)}")
        d, n, h, swiglu = VARIANTS[self.variant]
        return self.embed_dim or d, self.depth or n, self.heads or h, swiglu

    @property
    def hub_url(self) -> str:
        """The official pretrained checkpoint's URL,
        ``dinov2_{variant}_reg4_pretrain.pth`` whenever ``registers`` is non-zero, ``dinov2_{variant}_pretrain.pth``
        otherwise."""
        return HUB_URL.format(arch=self.variant, reg="_reg4" if self.registers else "")


class LayerScale(nn.Module):
    """DINOv2's LayerScale (``ls1`` / ``ls2``): a per-channel ``gamma`` (D,), initialised to 1."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D): ``x * gamma``."""
        return x * self.gamma


class Mlp(nn.Module):
    """DINOv2's MLP: ``fc1`` (D -> hidden), GELU, ``fc2`` (hidden -> D)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """The fused SwiGLU of ViT-g: hidden = 8 * ceil((2/3 * 4D) / 8)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12, self.w3 = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D): ``w3(silu(a) * b)``, ``a`` and ``b`` the two halves of ``w12(x)``."""
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Attention(nn.Module):
    """Multi-head self attention with DINOv2's names: a fused ``qkv`` projection, scaled dot-product attention over all
    tokens (no mask) and the output ``proj``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``+ ls2(mlp(norm2(x)))``; LayerNorms with eps
    1e-6, an MLP of hidden width 4 D (SwiGLU for ViT-g)."""

    def __init__(self, dim: int, heads: int, swiglu: bool):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.mlp = SwiGLU(dim, 4 * dim) if swiglu else Mlp(dim, 4 * dim)
        self.ls1, self.ls2 = LayerScale(dim), LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """14 x 14 pixel patches to D-dim tokens: ``proj``, a Conv2d(3, D) of kernel and stride 14."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, (H // 14) * (W // 14), D) tokens, row-major over the patch grid."""
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """A DINOv2 ViT-S/B/L/g/14 (``cfg``: :class:`ViTConfig`) whose parameters are named as the official
    ``dinov2_vit*14[_reg4]_pretrain.pth`` state dicts, used through :meth:`forward_features` (no ``forward``).
    ``mask_token`` is held only so that those state dicts load with ``strict=True``: it is not used here."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        dim, depth, heads, swiglu = cfg.dims()
        self.embed_dim = dim
        n = (cfg.img_size // PATCH) ** 2
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.registers, dim)) if cfg.registers else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, swiglu) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.antialias, self.offset = (True, 0.0) if cfg.registers else (False, 0.1)

    def interpolate_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for an (h, w) patch grid."""
        pos = self.pos_embed.float()
        n = pos.shape[1] - 1
        m = int(math.sqrt(n))
        if m * m != n:
            raise ValueError(f"pos_embed holds {n} patch positions, not a square grid")
        if (h, w) == (m, m):
            return self.pos_embed
        grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        if self.offset:
            kw = {"scale_factor": ((h + self.offset) / m, (w + self.offset) / m)}
        else:
            kw = {"size": (h, w)}
        grid = F.interpolate(grid, mode="bicubic", antialias=self.antialias, **kw)
        if grid.shape[-2:] != (h, w):
            raise RuntimeError(f"position embeddings interpolated to {tuple(grid.shape[-2:])}, expected {(h, w)}")
        return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1).to(self.pos_embed.dtype)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, 3, H, W), H and W multiples of 14 -> normalised CLS (B, D) and patch tokens (B, D, H/14, W/14)."""
        b, _, hh, ww = x.shape
        if hh % PATCH or ww % PATCH:
            raise ValueError(f"input {hh}x{ww}: sides must be multiples of {PATCH}")
        h, w = hh // PATCH, ww // PATCH
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(b, -1, -1), t], dim=1) + self.interpolate_pos_embed(h, w)
        if self.register_tokens is not None:
            t = torch.cat([t[:, :1], self.register_tokens.expand(b, -1, -1), t[:, 1:]], dim=1)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        r = 1 + self.cfg.registers
        return {"cls": t[:, 0], "patch": t[:, r:].transpose(1, 2).reshape(b, -1, h, w)}

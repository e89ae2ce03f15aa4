"""What a database image becomes for an AMES model, once, and back: the payload of the database store
(``stores/ames.py``, the file format). ``ames``: the projected tokens after the LayerNorm, float16 (as AMES stores
them); ``ames_binary``: the packed sign bits of the ITQ-initialised projection, decoded through the model's Linear
and LayerNorm. Nothing here is re-projected per pair.
"""

from __future__ import annotations

import numpy as np
import torch

from retrieval.runtime import state_digest


def model_digest(model: torch.nn.Module) -> str:
    """The digest of a model's weights a store is prepared for (``runtime.state_digest``)."""
    return state_digest(model)


def payload_layout(model) -> tuple[str, int]:
    """(payload name, width) of a model's store: ("codes", bits / 8 bytes) for a binary model, else ("tokens",
    ``model_dim``)."""
    if model.cfg.binarized:
        return "codes", model.remap_local[0].W.shape[1] // 8
    return "tokens", model.cfg.model_dim


@torch.no_grad()
def encode(model, desc: np.ndarray, device: str = "cpu") -> np.ndarray:
    """The payload of a block of database images' local descriptors ``desc`` (n, K, D) float16 or float32: packed
    sign codes (n, K, bits / 8) uint8 for a binary model (x >= 0 -> 1, ``np.packbits``' big-endian bit order), else
    the projected tokens (n, K, model_dim) float16. Padding rows are encoded too (the store zeroes them)."""
    x = torch.from_numpy(np.ascontiguousarray(desc, np.float32)).to(device)
    if model.cfg.binarized:
        z = model.remap_local[0].project(torch.nn.functional.normalize(x, p=2, dim=-1))
        return np.packbits((z >= 0).cpu().numpy(), axis=-1)
    return model.project_db(x).cpu().numpy().astype(np.float16)


@torch.no_grad()
def decode(model, payload: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """Tokens (n, K, model_dim) float32 on ``device`` from a stored payload: a binary model's codes unpacked to
    +-1 and passed through its Linear and LayerNorm, or the float16 tokens as float32."""
    if model.cfg.binarized:
        bits = model.remap_local[0].W.shape[1]
        signs = np.unpackbits(payload, axis=-1)[..., :bits].astype(np.float32) * 2.0 - 1.0
        t = torch.from_numpy(signs).to(device)
        return model.remap_local[2](model.remap_local[1](t)).float()
    return torch.from_numpy(payload.astype(np.float32)).to(device)

"""AMES (Suma et al., ECCV 2024): a transformer that scores an image pair from their local descriptors.

Sequence: [matching token] ++ query tokens ++ database tokens, no positional encoding. Five post-norm layers,
each: "self" attention (a token sees its own image's tokens and the matching token), "cross" attention (a token
sees the other image's tokens and the matching token; the matching token sees everything), a ReLU feed-forward.
Padded descriptors are masked as keys. ``classifier`` on the final matching token gives the logit.

Two implementations of the same weights:

* ``reference_forward``: one sequence with boolean attention masks, as the official code computes it; kept for
  tests and checkpoint checks.
* ``AMES.forward`` / ``AMES.score_tokens``: attention computed per image block (self: query->query, db->db;
  cross: query->db, db->query; the matching token against everything), which skips the masked half of the work.

Module names follow the official checkpoints (``mtc_token``, ``remap_local``, ``decoder.layers.{i}.{self_attn,
cross_attn,linear1,linear2,norm1,norm2,norm3}``, ``classifier``), so their state dicts load unchanged.

The binary variant maps each L2-normalised descriptor through a D x 128 matrix ``W`` (initialised by ITQ) and
takes the sign (x >= 0 -> +1, so packed bits and on-the-fly scores agree); while training, a smooth
``erf(x / sqrt(2 sigma))`` stands in for the sign. Our layer also holds a ``mean`` buffer subtracted before ``W``
(ITQ is fitted on centred descriptors); official checkpoints have no such buffer and load with a zero mean,
which is exactly their computation.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrieval.runtime import atomic_path, torch_load_problem


@dataclass(frozen=True)
class AmesConfig:
    """AMES's architecture (Suma et al., ECCV 2024; the official ``AMES`` module): ``local_dim``-wide local
    descriptors (768 for DINOv2, 1024 for CVNet, 128 for SIFT) projected to ``model_dim`` tokens, ``num_layers``
    transformer layers of ``nhead`` heads and a ``dim_feedforward``-wide MLP; ``binarized``: the database side
    through ITQ-initialised binary codes (``ames_binary``)."""

    local_dim: int = 768
    model_dim: int = 128
    nhead: int = 2
    num_layers: int = 5
    dim_feedforward: int = 1024
    binarized: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict of its fields (what :func:`save_checkpoint` stores under ``config``)."""
        return asdict(self)


class Binarization(nn.Module):
    """The binary model's descriptor codes (the official ``BinarizationLayer``): L2-normalise, centre by ``mean``
    (D,), project by ``W`` (D, bits; ITQ's rotation of the PCA basis at initialisation), then the sign in eval
    (+1 where the projection is >= 0; the official code maps 0 to 0) or, in training, ``erf(z / sqrt(2 sigma))``,
    a smooth relaxation of it (``sigma`` the variance of that Gaussian CDF; small: nearly the sign)."""

    def __init__(self, dim: int, bits: int, sigma: float = 1e-6):
        super().__init__()
        self.sigma = sigma
        self.W = nn.Parameter(torch.randn(dim, bits) / math.sqrt(dim))
        self.register_buffer("mean", torch.zeros(dim))

    def project(self, x: Tensor) -> Tensor:
        """``x`` (..., D) descriptors -> (..., bits) projections before the sign: ``(normalise(x) - mean) @ W``."""
        return (F.normalize(x, p=2, dim=-1) - self.mean) @ self.W

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) descriptors -> (..., bits) codes in the projection's dtype: -1.0 / +1.0 in eval (+1 where the
        projection is >= 0), ``erf(z / sqrt(2 sigma))`` in [-1, 1] while training."""
        z = self.project(x)
        if self.training:
            return torch.erf(z / math.sqrt(2 * self.sigma))
        return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _block_attention(
    attn: nn.MultiheadAttention, x: Tensor, n_q: int, q_keep: Tensor | None, d_keep: Tensor | None, cross: bool
) -> Tensor:
    """One AMES attention block computed per image block.

    x: (B, 1+Q+T, C); q_keep (B, Q) / d_keep (B, T): True for real (non-padded) descriptors, or both None when no
    descriptor of the batch is padded: then no attention mask is built (the kernel without one is faster; on the
    CPU the result is the same to the bit, since the mask only adds zeros to the scores of real keys).
    self (cross=False): query tokens attend to [mtc, query], db tokens to [mtc, db];
    cross (cross=True): query tokens attend to [mtc, db], db tokens to [mtc, query]; mtc attends to all.
    """
    b, length, c = x.shape
    h = attn.num_heads
    dh = c // h
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # (B, L, 3C)
    qkv = qkv.view(b, length, 3, h, dh).permute(2, 0, 3, 1, 4)  # (3, B, h, L, dh)
    q, k, v = qkv.unbind(0)  # one backward (a stack), not three that each clear a full-size gradient
    k_m, v_m = k[:, :, :1], v[:, :, :1]
    k_d, v_d = k[:, :, 1 + n_q :], v[:, :, 1 + n_q :]
    # keys and values of the query rows, then of the database rows: built in this order, which fixes the order in
    # which autograd sums the gradients of k and v (another order changes them in the last bits)
    if cross:  # query rows see [mtc, db], database rows [mtc, query]
        keys_q = (torch.cat([k_m, k_d], 2), torch.cat([v_m, v_d], 2))
        keys_d = (k[:, :, : 1 + n_q], v[:, :, : 1 + n_q])
    else:  # query rows see [mtc, query], database rows [mtc, db]
        keys_q = (k[:, :, : 1 + n_q], v[:, :, : 1 + n_q])
        keys_d = (torch.cat([k_m, k_d], 2), torch.cat([v_m, v_d], 2))
    if q_keep is None or d_keep is None:
        mask_m = mask_q = mask_d = None
    else:  # (B, 1, 1, keys) boolean masks, True = may be attended
        one = q_keep.new_ones((b, 1))
        mtc_q, mtc_d = torch.cat([one, q_keep], 1), torch.cat([one, d_keep], 1)
        mask_m = torch.cat([one, q_keep, d_keep], 1)[:, None, None, :]
        mask_q = (mtc_d if cross else mtc_q)[:, None, None, :]
        mask_d = (mtc_q if cross else mtc_d)[:, None, None, :]
    sdpa = _sdpa_float32 if _float32_attention(q) else F.scaled_dot_product_attention
    o_m = sdpa(q[:, :, :1], k, v, attn_mask=mask_m)
    o_q = sdpa(q[:, :, 1 : 1 + n_q], *keys_q, attn_mask=mask_q)
    o_d = sdpa(q[:, :, 1 + n_q :], *keys_d, attn_mask=mask_d)
    out = torch.cat([o_m, o_q, o_d], 2).transpose(1, 2).reshape(b, length, c)  # (B, L, C)
    return attn.out_proj(out)


def _float32_attention(q: Tensor) -> bool:
    """Training in bfloat16 on the CPU: the attention kernels run in float32 (the matrix products around them stay
    bfloat16). Measured with torch 2.13 on an AVX-512 BF16 / AMX CPU: the CPU flash-attention backward in bfloat16
    took 2.3x the time of float32's (README, "Precision" under AMES); the forward alone and CUDA's kernels are not affected."""
    return q.dtype == torch.bfloat16 and q.device.type == "cpu" and torch.is_grad_enabled()


def _sdpa_float32(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask)


class DecoderLayer(nn.Module):
    """One AMES layer (Suma et al., ECCV 2024), named as the official checkpoints' ``decoder.layers.{i}``: post-norm
    ``self_attn``, ``cross_attn`` (both ``d_model`` wide, ``nhead`` heads) and a ReLU feed-forward ``linear1`` ->
    ``linear2`` of width ``dim_feedforward``, each with a residual and its LayerNorm (``norm1``-``norm3``); the
    attention is computed per image block (``_block_attention``)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def feed_forward(self, x: Tensor) -> Tensor:
        """``linear2(relu(linear1(x)))`` of (B, L, C) tokens, without the residual and the norm; the ReLU is in place
        only when autograd is off (the same values either way)."""
        # in place only without autograd: linear1's output is a view of its 2-D product, and an in-place ReLU on a
        # view makes autograd's backward clear and copy the whole (B, L, dim_feedforward) tensor (about 6% of a
        # training step on the CPU); out of place the values and gradients are the same
        return self.linear2(F.relu(self.linear1(x), inplace=not torch.is_grad_enabled()))

    def forward(self, x: Tensor, n_q: int, q_keep: Tensor | None, d_keep: Tensor | None) -> Tensor:
        """One post-norm layer on (B, 1+Q+T, C): self attention, cross attention, feed-forward, each + residual."""
        x = self.norm1(x + _block_attention(self.self_attn, x, n_q, q_keep, d_keep, cross=False))
        x = self.norm2(x + _block_attention(self.cross_attn, x, n_q, q_keep, d_keep, cross=True))
        return self.norm3(x + self.feed_forward(x))


class Decoder(nn.Module):
    """AMES's ``num_layers`` :class:`DecoderLayer` in sequence (``decoder.layers`` of the official checkpoints)."""

    def __init__(self, cfg: AmesConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(cfg.model_dim, cfg.nhead, cfg.dim_feedforward) for _ in range(cfg.num_layers)
        )

    def forward(self, x: Tensor, n_q: int, q_keep: Tensor | None, d_keep: Tensor | None) -> Tensor:
        """(B, 1+Q+T, C) tokens through every layer in turn: ``n_q`` query tokens follow the matching token; ``q_keep``
        (B, Q) / ``d_keep`` (B, T) bool are True for real descriptors (both None: nothing padded)."""
        for layer in self.layers:
            x = layer(x, n_q, q_keep, d_keep)
        return x


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class AMES(nn.Module):
    """AMES's similarity of an image pair (Suma et al., "AMES: Asymmetric and Memory-Efficient Similarity
    Estimation for Instance-level Retrieval", ECCV 2024; transcribed from the official code): both images' local
    descriptors are projected to tokens by shared weights, a learned token is prepended to the query's and the
    database image's tokens, the transformer mixes them, and a linear classifier of that token gives the logit.
    The database side is computed once per image and stored (``project_db``); :func:`reference_forward` is the
    frozen transcription the fast path is tested against."""

    def __init__(self, cfg: AmesConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.model_dim
        self.mtc_token = nn.Parameter(torch.zeros(d))
        if cfg.binarized:
            self.remap_local = nn.Sequential(Binarization(cfg.local_dim, d), nn.Linear(d, d), nn.LayerNorm(d))
        else:
            self.remap_local = nn.Sequential(nn.Linear(cfg.local_dim, d), nn.LayerNorm(d))
        self.decoder = Decoder(cfg)
        self.classifier = nn.Linear(d, 1)
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.mtc_token, std=0.02)

    # -- tokens ------------------------------------------------------------------------------------------
    def project(self, local: Tensor) -> Tensor:
        """(B, N, D) descriptors -> (B, N, 128) tokens; the weights are shared by both images."""
        return self.remap_local(F.normalize(local, p=2, dim=-1))

    def project_db(self, local: Tensor) -> Tensor:
        """Database-side tokens as stored: in full-precision inference they are rounded through float16."""
        t = self.project(local)
        if not self.training and not self.cfg.binarized:
            t = t.half().float()
        return t

    # -- fast path -----------------------------------------------------------------------------------------
    def score_tokens(
        self, q_tok: Tensor, q_mask: Tensor, d_tok: Tensor, d_mask: Tensor, return_hidden: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (B,) from projected tokens; masks are True for padding (as in the official code)."""
        b, n_q, _ = q_tok.shape
        x = torch.cat([self.mtc_token.expand(b, 1, -1), q_tok, d_tok], 1)
        q_keep, d_keep = ~q_mask.bool(), ~d_mask.bool()
        if not (bool(q_mask.any()) or bool(d_mask.any())):  # nothing padded: no attention masks (one check per forward)
            q_keep = d_keep = None
        x = self.decoder(x, n_q, q_keep, d_keep)
        logits = self.classifier(x[:, 0]).view(-1)
        return (logits, x) if return_hidden else logits

    def forward(
        self,
        src_local: Tensor,
        tgt_local: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        return_hidden: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (B,) float of ``src_local`` (B, Nq, local_dim) query descriptors against ``tgt_local`` (B, Nd,
        local_dim) database descriptors; the masks (B, Nq) / (B, Nd) bool are True for padding (as in the official
        code; None: nothing padded). With ``return_hidden`` also the tokens (B, 1 + Nq + Nd, model_dim) after the
        last layer. In eval the database tokens are rounded through float16, as stored."""
        if src_mask is None:
            src_mask = torch.zeros(src_local.shape[:2], dtype=torch.bool, device=src_local.device)
        if tgt_mask is None:
            tgt_mask = torch.zeros(tgt_local.shape[:2], dtype=torch.bool, device=tgt_local.device)
        return self.score_tokens(self.project(src_local), src_mask, self.project_db(tgt_local), tgt_mask, return_hidden)


def reference_forward(
    model: AMES, src_local: Tensor, src_mask: Tensor, tgt_local: Tensor, tgt_mask: Tensor, return_hidden: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """The official computation: one (1+Q+T) sequence through torch's MultiheadAttention with boolean masks."""
    q_tok, d_tok = model.project(src_local), model.project_db(tgt_local)
    b, n_q, _ = q_tok.shape
    n_t = d_tok.shape[1]
    x = torch.cat([model.mtc_token.expand(b, 1, -1), q_tok, d_tok], 1)
    pad = torch.cat([src_mask.new_zeros((b, 1)), src_mask, tgt_mask], 1).bool()
    n = 1 + n_q + n_t
    sa_mask = torch.zeros((n, n), dtype=torch.bool, device=x.device)
    sa_mask[1 : n_q + 1, n_q + 1 :] = True  # True = may not attend
    sa_mask[n_q + 1 :, 1 : n_q + 1] = True
    ca_mask = torch.zeros((n, n), dtype=torch.bool, device=x.device)
    ca_mask[1 : n_q + 1, 1 : n_q + 1] = True
    ca_mask[n_q + 1 :, n_q + 1 :] = True
    for layer in model.decoder.layers:
        x = layer.norm1(x + layer.self_attn(x, x, x, attn_mask=sa_mask, key_padding_mask=pad, need_weights=False)[0])
        x = layer.norm2(x + layer.cross_attn(x, x, x, attn_mask=ca_mask, key_padding_mask=pad, need_weights=False)[0])
        x = layer.norm3(x + layer.feed_forward(x))
    logits = model.classifier(x[:, 0]).view(-1)
    return (logits, x) if return_hidden else logits


def infer_config(state: dict[str, Tensor]) -> AmesConfig:
    """Model configuration from the shapes of a state dict (official or ours)."""
    binarized = "remap_local.0.W" in state
    local_dim = state["remap_local.0.W"].shape[0] if binarized else state["remap_local.0.weight"].shape[1]
    layers = {int(k.split(".")[2]) for k in state if k.startswith("decoder.layers.")}
    return AmesConfig(
        local_dim=int(local_dim),
        model_dim=int(state["mtc_token"].shape[-1]),
        num_layers=len(layers),
        dim_feedforward=int(state["decoder.layers.0.linear1.weight"].shape[0]),
        binarized=binarized,
    )


def save_checkpoint(path: str, model: AMES, provenance: dict[str, Any]) -> None:
    """Write ``model`` (state dict, config) and ``provenance`` to ``path`` atomically; the same model and provenance
    give the same bytes (saved through a file handle: given a path, torch names the archive's records after the
    temporary file, so every run's file, and its sha1 in the manifest, differed)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"state": model.state_dict(), "config": model.cfg.to_dict(), "provenance": provenance}, fh)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu", nhead: int = 2) -> tuple[AMES, dict[str, Any]]:
    """The model and its checkpoint dict from our checkpoints or the official ones (a dict with key ``state``;
    ``module.`` prefixes dropped), read with ``weights_only=True``; the architecture from our ``config`` or, for an
    official file, inferred from the state's shapes (``nhead``, which shapes do not show, given here: 2 as
    released). FileNotFoundError / OSError for a missing file; ValueError naming the file for one that is not an
    AMES checkpoint (unreadable, or code-running pickles refused unread, no ``state`` dict, no ``mtc_token``)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    # torch's errors name neither the file nor the cause; an unpickling error is also what weights_only gives a file
    # that would run code (refused, never loaded)
    except (RuntimeError, KeyError, EOFError, ValueError, OSError, pickle.UnpicklingError) as e:
        if isinstance(e, OSError) and not Path(path).is_file():
            raise
        detail = torch_load_problem(path, e)
        raise ValueError(f"{path}: not an AMES checkpoint (torch.load could not read it: {detail})") from None
    if not isinstance(ckpt, dict) or "state" not in ckpt:
        raise ValueError(f"{path}: not an AMES checkpoint (expected a dict with key 'state')")
    if not isinstance(ckpt["state"], dict):
        raise ValueError(f"{path}: not an AMES checkpoint ('state' is a {type(ckpt['state']).__name__}, not a dict)")
    state = {k.removeprefix("module."): v for k, v in ckpt["state"].items()}
    if "mtc_token" not in state:  # read below and by infer_config: a KeyError named neither the file nor the key
        raise ValueError(
            f"{path}: not an AMES checkpoint (its state dict has no 'mtc_token'; keys: {sorted(state)[:5]})"
        )
    try:
        cfg = (
            AmesConfig(**ckpt["config"])
            if "config" in ckpt
            else AmesConfig(**{**infer_config(state).to_dict(), "nhead": nhead})
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not an AMES checkpoint (its configuration cannot be read: {e!r})") from None
    model = AMES(cfg)
    if cfg.binarized and "remap_local.0.mean" not in state:
        state["remap_local.0.mean"] = torch.zeros(cfg.local_dim)  # official layer: no centring
    if state["mtc_token"].dim() != 1:
        state["mtc_token"] = state["mtc_token"].reshape(-1)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: state dict does not match AMES {cfg}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model, {k: v for k, v in ckpt.items() if k != "state"}

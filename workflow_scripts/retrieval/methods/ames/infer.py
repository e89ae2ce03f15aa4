"""AMES inference with the work that does not depend on the pair hoisted out of the per-pair loop.

The same weights and the same function as ``AMES.score_tokens`` / ``reference_forward`` (Suma et al., ECCV 2024;
``src/models/ames.py`` of the official code: post-norm layers of "self", "cross" attention and a ReLU FFN, the
matching token (MTC) attending to everything, padded descriptors masked as keys), reorganised for re-ranking,
where one query meets many database images and one database image meets several queries:

* Layer 1's self attention of a local token sees only its own image's tokens and the initial MTC (a constant), so
  its output, and that layer's cross-attention projections (Q, K, V) of the result, are computed once per image
  (``prepare_side``): once per database image and once per query, not once per pair. The MTC row of that self
  attention sees both images: it is combined per pair from per-image softmax partials (running maximum, sum of
  exponentials, weighted sum of values; the log-sum-exp split of Milakov & Gimelshein 2018), which is exact.
* Layer 5 (the last): only the MTC's final state reaches the classifier, so its cross attention, FFN and norms are
  computed for the MTC row alone (the self attention still runs for every token: its output feeds the MTC's keys).
* Layers 2-4 run per pair, block by block as in ``AMES.score_tokens``.

Precision: float32, or bfloat16 matrix products (``torch.autocast``) where the hardware executes them natively
(``fast_dtype``: AVX-512 BF16 / AMX on the CPU, bf16-capable GPUs); the logits agree with float32 to about 1e-6
on the float32 path and to about 1% on the bfloat16 path (measured; tests/unit/test_ames_infer.py asserts 1e-5 and
2%). The attention of the per-pair blocks is torch's fused kernel, or in bfloat16 on a CPU without AMX two matrix
products and a softmax (``attention_kernel``: faster there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from retrieval.methods.ames.model import AMES


def _has_amx() -> bool:
    """Whether this CPU has AMX tiles (torch's run-time check; False where torch has no such check)."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


_AMX = _has_amx()


def fast_dtype(device: str | torch.device) -> torch.dtype:
    """bfloat16 where matrix products in it run natively (a CPU with AVX-512 BF16 or AMX and an AVX512 torch CPU
    capability, detected at run time; a GPU of compute capability >= 8.0), float32 elsewhere (emulated bfloat16 is
    slower than float32)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        # native only (compute capability >= 8): is_bf16_supported() also counts emulation on older GPUs
        return torch.bfloat16 if torch.cuda.get_device_capability(dev)[0] >= 8 else torch.float32
    cap = torch.backends.cpu.get_cpu_capability()
    native = torch.cpu._is_avx512_bf16_supported() or _has_amx()
    return torch.bfloat16 if native and cap.startswith("AVX512") else torch.float32


PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype:
    """The dtype of the per-pair matrix products for ``ames.precision``: ``auto`` -> :func:`fast_dtype` (bfloat16
    where the hardware runs it natively, float32 elsewhere), ``float32``, ``bfloat16`` (also where it is emulated:
    correct but slower than float32). Raises ValueError naming the key for anything else."""
    if precision not in PRECISIONS:
        raise ValueError(f"ames.precision: '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return fast_dtype(device)
    return torch.float32 if precision == "float32" else torch.bfloat16


@dataclass
class PreparedSide:
    """Per-image state after layer 1's self attention, for N images of S tokens (model dim C, h heads of dh).

    x: (N, S, C) token states after layer 1's norm1; keep: (N, S) bool, True for real descriptors;
    cqkv: (N, S, 3C) layer 1's cross-attention projections (Q, K, V) of ``x``;
    m_max, m_sum: (N, h) and m_acc: (N, h, dh): the initial MTC's self-attention softmax partials over this
    image's keys (maximum score, sum of exp(score - max), sum of exp(score - max) * value), float32.
    """

    x: Tensor
    keep: Tensor
    cqkv: Tensor
    m_max: Tensor
    m_sum: Tensor
    m_acc: Tensor

    def take(self, idx: Tensor) -> PreparedSide:
        """The state of the images ``idx`` selects (an int64 index or bool tensor over the N images), every field
        indexed along its first dimension: with a repeated index, one row per pair."""
        return PreparedSide(*(t[idx] for t in (self.x, self.keep, self.cqkv, self.m_max, self.m_sum, self.m_acc)))


def _heads(x: Tensor, h: int) -> Tensor:
    """(N, S, C) -> (N, h, S, C // h)."""
    n, s, c = x.shape
    return x.view(n, s, h, c // h).transpose(1, 2)


def _merge(x: Tensor) -> Tensor:
    """(N, h, S, dh) -> (N, S, h * dh)."""
    n, h, s, dh = x.shape
    return x.transpose(1, 2).reshape(n, s, h * dh)


def matmul_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(dh)) v (Vaswani et al. 2017), the same function as ``F.scaled_dot_product_attention``
    with a boolean mask, as two batched matrix products and torch's softmax, all in the inputs' dtype.

    q: (..., Lq, dh), k and v: (..., Lk, dh); attn_mask: None or bool broadcastable to (..., Lq, Lk), True where a
    key is attended to. Every row must keep at least one key (AMES's rows always keep the MTC); a row with none gives
    NaN. Returns (..., Lq, dh) in q's dtype. In bfloat16 the scores are rounded to bfloat16 before the softmax
    (which accumulates in float32); the logits stay within 2% of float32 (tests/unit/test_ames_infer.py).

    Where more than one query row attends, keys are padded with zeros to a multiple of 16 if that widens the scores
    by at most 1/64 (601 keys to 608; not 129 to 144), their scores set to -inf, which is exact: torch 2.13's
    bfloat16 softmax over 16 x 2 x 600 rows took 8.7 ms at 601 keys and 5.7 ms at 608 on the AVX-512 BF16 EPYC,
    where at 129 keys (0.27 ms) 144 took 0.64. A one-row query (the MTC) is not padded: its softmax is short, and
    padding would copy all its keys and values."""
    n_k = k.shape[-2]
    pad = -n_k % 16
    if q.shape[-2] > 1 and 0 < pad * 64 <= n_k:  # the docstring says why; exact: the padded keys are masked out
        k, v = F.pad(k, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
    s = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    if attn_mask is not None:
        s[..., :n_k].masked_fill_(~attn_mask, float("-inf"))
    s[..., n_k:] = float("-inf")
    return torch.matmul(torch.softmax(s, -1), v)


KERNELS = ("auto", "fused", "matmul")


def auto_kernel(device: str | torch.device, dtype: torch.dtype) -> str:
    """``attention_kernel``'s ``auto`` choice for tensors of ``dtype`` on ``device``: ``"matmul"`` for bfloat16 on
    a CPU without AMX, ``"fused"`` elsewhere (why: :func:`attention_kernel`)."""
    return "matmul" if torch.device(device).type == "cpu" and dtype == torch.bfloat16 and not _AMX else "fused"


def attention_kernel(q: Tensor, kernel: str = "auto") -> Callable[..., Tensor]:
    """The attention of the per-pair blocks for queries ``q``. ``kernel`` ``auto``: :func:`matmul_attention` for
    bfloat16 on a CPU without AMX, torch's fused ``scaled_dot_product_attention`` elsewhere; ``fused`` or
    ``matmul`` forces one (the throughput benchmark times the one ``auto`` does not choose). Raises ValueError for
    another ``kernel``.

    Measured with torch 2.13 on 2 cores of an AMD EPYC with AVX-512 BF16 and no AMX (README "Speed"): torch's CPU
    flash-attention kernel computes its exponentials in float32 (``torch.exp`` ran at 1.15 G/s a core there in
    float32, 2.0 G/s in bfloat16) and took about 5 ms for a one-row query (the MTC) of 16 pairs, so the
    matrix-product form gave 1.15-1.27x the pairs/s of the whole bfloat16 forward at 600/600, 128/128 and 256/128
    descriptors (1.15-1.38x with :func:`matmul_attention`'s padding). In float32 it was slower (0.64x at
    600/600, without the jobs' allocator settings). With AMX the fused kernel is faster: the benchmark target on 2
    cores of a Xeon with AMX gave this form 0.85-0.89x the fused path's pairs/s at 600/600 and 0.80-0.82x at
    128/128 in two runs (2026-12-08). Both keep the fused kernel, as the GPU does."""
    if kernel not in KERNELS:
        raise ValueError(f"attention kernel '{kernel}' is not one of {', '.join(KERNELS)}")
    if kernel == "auto":
        kernel = auto_kernel(q.device, q.dtype)
    return matmul_attention if kernel == "matmul" else F.scaled_dot_product_attention


def _mask(keep: Tensor) -> Tensor | None:
    """SDPA boolean mask (N, 1, 1, S) from key validity, or None when nothing is padded (the faster kernel)."""
    return None if bool(keep.all()) else keep[:, None, None, :]


@torch.no_grad()
def prepare_side(model: AMES, tok: Tensor, pad: Tensor) -> PreparedSide:
    """Layer 1's self attention and cross-attention projections of N images' tokens, in float32 (called outside
    autocast, as ``compute_logits`` and the benchmark do; ``score_prepared`` runs the per-pair work in its dtype).

    tok: (N, S, C) projected tokens (``model.project`` / ``project_db``, or an AMES database store's tokens);
    pad: (N, S) bool, True for padding (as in the official code). Independent of the other image of any pair.
    """
    layer = model.decoder.layers[0]
    sa, ca = layer.self_attn, layer.cross_attn
    n, _, c = tok.shape
    h = sa.num_heads
    dh = c // h
    tok = tok.float()
    keep = ~pad.bool()
    mtc = model.mtc_token.view(1, 1, c).expand(n, 1, c)
    qkv = F.linear(torch.cat([mtc, tok], 1), sa.in_proj_weight, sa.in_proj_bias)  # (N, 1+S, 3C)
    q, k, v = (_heads(t, h) for t in qkv.split(c, -1))  # (N, h, 1+S, dh)
    keys_keep = torch.cat([keep.new_ones((n, 1)), keep], 1)
    o = F.scaled_dot_product_attention(q[:, :, 1:], k, v, attn_mask=_mask(keys_keep))  # tokens: [MTC, own image]
    x = layer.norm1(tok + sa.out_proj(_merge(o)))
    # the initial MTC's scores against this image's keys, as softmax partials
    score = (q[:, :, :1] @ k[:, :, 1:].transpose(-1, -2)).squeeze(2) / math.sqrt(dh)  # (N, h, S)
    score = score.masked_fill(~keep[:, None, :], float("-inf"))
    m_max = score.amax(-1)
    m_max = torch.where(torch.isfinite(m_max), m_max, torch.zeros_like(m_max))  # an image with no descriptors
    e = torch.exp(score - m_max[..., None])
    cqkv = F.linear(x, ca.in_proj_weight, ca.in_proj_bias)
    return PreparedSide(x, keep, cqkv, m_max, e.sum(-1), (e[..., None] * v[:, :, 1:]).sum(-2))


class _Keys:
    """Key masks of a batch of pairs in the layout [query tokens, MTC, database tokens] (each key set a slice), and
    the attention kernel (``attention_kernel``'s ``kernel``) their blocks use."""

    def __init__(self, q_keep: Tensor, d_keep: Tensor, kernel: str = "auto"):
        one = q_keep.new_ones((q_keep.shape[0], 1))
        self.n_q = q_keep.shape[1]
        self.kernel = kernel
        self.q_mtc = _mask(torch.cat([q_keep, one], 1))  # keys [query, MTC]
        self.mtc_d = _mask(torch.cat([one, d_keep], 1))  # keys [MTC, database]
        self.all = _mask(torch.cat([q_keep, one, d_keep], 1))


def _attention(
    attn: torch.nn.MultiheadAttention, x: Tensor, keys: _Keys, cross: bool, qkv: Tensor | None = None
) -> Tensor:
    """One AMES attention block (B, L, C) -> (B, L, C) on x laid out as [query tokens, MTC, database tokens].

    In this order every row's key set is one contiguous slice, so no key is copied: self attention, query rows see
    [query, MTC], database rows [MTC, database]; cross attention the other slice; the MTC row sees everything.
    """
    b, length, c = x.shape
    h = attn.num_heads
    n_q = keys.n_q
    if qkv is None:
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # (B, L, 3C)
    q, k, v = (t.view(b, length, h, c // h).transpose(1, 2) for t in qkv.split(c, -1))  # (B, h, L, dh), strided
    sdpa = attention_kernel(q, keys.kernel)
    lo, hi = (slice(0, n_q + 1), keys.q_mtc), (slice(n_q, length), keys.mtc_d)
    kq, kd = (hi, lo) if cross else (lo, hi)
    o_q = sdpa(q[:, :, :n_q], k[:, :, kq[0]], v[:, :, kq[0]], attn_mask=kq[1])
    o_m = sdpa(q[:, :, n_q : n_q + 1], k, v, attn_mask=keys.all)
    o_d = sdpa(q[:, :, n_q + 1 :], k[:, :, kd[0]], v[:, :, kd[0]], attn_mask=kd[1])
    # the fused CPU and CUDA kernels return (B, h, S, dh) views of (B, S, h, dh) memory: transposing back is free
    # (matmul_attention's outputs are contiguous (B, h, S, dh): the cat below copies them once)
    out = torch.cat([o_q.transpose(1, 2), o_m.transpose(1, 2), o_d.transpose(1, 2)], 1).reshape(b, length, c)
    return attn.out_proj(out)


def _first_mtc(model: AMES, qs: PreparedSide, ds: PreparedSide) -> Tensor:
    """(B, 1, C) MTC state after layer 1's self attention (and norm1), from both sides' softmax partials."""
    layer = model.decoder.layers[0]
    sa = layer.self_attn
    c = model.mtc_token.shape[0]
    h = sa.num_heads
    dh = c // h
    qkv = F.linear(model.mtc_token, sa.in_proj_weight, sa.in_proj_bias)
    q0, k0, v0 = (t.view(h, dh) for t in qkv.split(c))
    s0 = (q0 * k0).sum(-1) / math.sqrt(dh)  # (h,) the MTC's score against its own key
    top = torch.maximum(torch.maximum(qs.m_max, ds.m_max), s0)  # (B, h)
    w0, wq, wd = torch.exp(s0 - top), torch.exp(qs.m_max - top), torch.exp(ds.m_max - top)
    total = w0 + wq * qs.m_sum + wd * ds.m_sum
    o = (w0[..., None] * v0 + wq[..., None] * qs.m_acc + wd[..., None] * ds.m_acc) / total[..., None]  # (B, h, dh)
    return layer.norm1(model.mtc_token + sa.out_proj(o.reshape(-1, 1, c)))


def _first_cross(
    model: AMES, mtc: Tensor, qs: PreparedSide, ds: PreparedSide, keys: _Keys, dtype: torch.dtype
) -> Tensor:
    """(B, Q+1+T, C) states after layer 1 (cross attention from the prepared projections, norm2, FFN, norm3); its
    attention in ``dtype``, as the later layers' (whose projections autocast makes bfloat16)."""
    layer = model.decoder.layers[0]
    ca = layer.cross_attn
    x = torch.cat([qs.x, mtc.to(qs.x.dtype), ds.x], 1)
    mq = F.linear(mtc, ca.in_proj_weight, ca.in_proj_bias).to(dtype)  # (B, 1, 3C)
    # the prepared projections (float32), laid out as one sequence
    qkv = torch.cat([qs.cqkv.to(dtype), mq, ds.cqkv.to(dtype)], 1)
    x = layer.norm2(x + _attention(ca, x, keys, cross=True, qkv=qkv))
    return layer.norm3(x + layer.feed_forward(x))


def _last_layer_mtc(model: AMES, x: Tensor, keys: _Keys) -> Tensor:
    """(B, C) final MTC state: the last layer's self attention for every token, the rest for the MTC row only."""
    layer = model.decoder.layers[-1]
    x = layer.norm1(x + _attention(layer.self_attn, x, keys, cross=False))
    ca = layer.cross_attn
    b, length, c = x.shape
    h = ca.num_heads
    n_q = keys.n_q
    w, bias = ca.in_proj_weight, ca.in_proj_bias
    mtc = x[:, n_q : n_q + 1]
    q = F.linear(mtc, w[:c], bias[:c]).view(b, 1, h, c // h).transpose(1, 2)  # (B, h, 1, dh)
    k, v = (t.view(b, length, h, c // h).transpose(1, 2) for t in F.linear(x, w[c:], bias[c:]).split(c, -1))
    o = attention_kernel(q, keys.kernel)(q, k, v, attn_mask=keys.all)
    m = layer.norm2(mtc + ca.out_proj(o.transpose(1, 2).reshape(b, 1, c)))
    return layer.norm3(m + layer.feed_forward(m))[:, 0]


@torch.no_grad()
def score_prepared(
    model: AMES, qs: PreparedSide, ds: PreparedSide, dtype: torch.dtype = torch.float32, kernel: str = "auto"
) -> Tensor:
    """Logits (B,) float32 of B pairs (row b of ``qs`` with row b of ``ds``); the same function as
    ``AMES.score_tokens`` on the unprepared tokens. ``dtype`` bfloat16 runs the per-pair matrix products in it;
    ``kernel`` is the blocks' attention (``attention_kernel``; ``auto`` in the workflow). Raises ValueError for an
    unknown ``kernel`` (from the first block)."""
    layers = model.decoder.layers
    keys = _Keys(qs.keep, ds.keep, kernel)
    n_q = keys.n_q
    with torch.autocast(qs.x.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        x = _first_cross(model, _first_mtc(model, qs, ds), qs, ds, keys, dtype)
        for layer in layers[1:-1]:
            x = layer.norm1(x + _attention(layer.self_attn, x, keys, cross=False))
            x = layer.norm2(x + _attention(layer.cross_attn, x, keys, cross=True))
            x = layer.norm3(x + layer.feed_forward(x))
        m = _last_layer_mtc(model, x, keys) if len(layers) > 1 else x[:, n_q]
        return model.classifier(m).float().view(-1)

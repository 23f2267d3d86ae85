"""Shared pieces of the attention kernels: block configs, dot precision, launch helpers.

Layout conventions of every attention kernel here: q/k/v (and their tangents) are contiguous
(B, H, N, D) tensors addressed by ``bh * N * D``; the additive bias (and its tangent) is any
tensor expanded to (B, H, N_q, N_k) and addressed through its four strides (0 on broadcast
dims, so a (H, N, N) relative-position bias is never copied per batch); lse/delta rows are
float32 (B, H, N_q).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def configs():
    """Autotune space (kernels/attention_configs.py owns it and its per-target pruning)."""
    from .attention_configs import make_configs

    return make_configs()


@triton.jit
def dot(a, b, IEEE: tl.constexpr):
    """tl.dot in full fp32 precision for fp32 inputs (Hessian work must not silently use tf32)."""
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def masked_scores(q, k, Bias, b, h, offs_m, offs_n, mask_mn, mask_n,
                  sb_b, sb_h, sb_m, sb_n, scale, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr):
    """S = scale Q K^T + B for one (BLOCK_M, BLOCK_N) tile, -inf on keys past N_k."""
    s = dot(q, tl.trans(k), IEEE) * scale
    if HAS_BIAS:
        s += tl.load(Bias + b * sb_b + h * sb_h + offs_m[:, None] * sb_m + offs_n[None, :] * sb_n,
                     mask=mask_mn, other=0.0).to(tl.float32)
    return tl.where(mask_n[None, :], s, float("-inf"))


@triton.jit
def tangent_scores(q, k, tq, tk, TBias, b, h, offs_m, offs_n, mask_mn,
                   stb_b, stb_h, stb_m, stb_n, scale, HAS_TBIAS: tl.constexpr, IEEE: tl.constexpr):
    """S' = scale (Q' K^T + Q K'^T) + B' for one tile (the JVP of the scores)."""
    ts = (dot(tq, tl.trans(k), IEEE) + dot(q, tl.trans(tk), IEEE)) * scale
    if HAS_TBIAS:
        ts += tl.load(TBias + b * stb_b + h * stb_h + offs_m[:, None] * stb_m + offs_n[None, :] * stb_n,
                      mask=mask_mn, other=0.0).to(tl.float32)
    return ts


def bias_4d(bias: torch.Tensor | None, shape: tuple[int, int, int, int]):
    """(tensor, strides) of a bias viewed as (B, H, N_q, N_k); a zero-stride dummy when None."""
    if bias is None:
        return None, (0, 0, 0, 0)
    while bias.dim() < 4:
        bias = bias.unsqueeze(0)
    bias = bias.expand(shape)
    return bias, tuple(bias.stride())


def check_device(*tensors):
    for t in tensors:
        if t is not None and t.device.type != "cuda" and not INTERPRET:
            raise RuntimeError("Triton attention kernels need CUDA tensors "
                               "(or TRITON_INTERPRET=1 set before importing the kernels)")


def is_ieee(dtype: torch.dtype) -> bool:
    return dtype == torch.float32

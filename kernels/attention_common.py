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

"""Reference attention for tests and benchmarks: PyTorch SDPA forced onto its math backend.

The math backend materialises the (N, N) attention matrix per head, but it is built from
ordinary differentiable ops, so it supports double backward and forward-mode AD: the ground
truth fused_attention is checked against.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel


def math_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: Optional[float] = None,
                   attn_bias: Optional[Tensor] = None) -> Tensor:
    """``F.scaled_dot_product_attention`` on the math backend; same signature as fused_attention.

    Example:
        >>> import torch
        >>> q = k = v = torch.randn(1, 2, 5, 16)
        >>> math_attention(q, k, v).shape
        torch.Size([1, 2, 5, 16])
    """
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=scale)


__all__ = ["math_attention"]

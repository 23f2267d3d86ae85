"""fused_attention: non-causal scaled-dot-product attention with first and second-order AD.

PyTorch's fused SDPA backends have neither double backward nor forward-mode AD, so no
Hessian-vector product passes through them.  ``fused_attention`` computes the same function
in O(N * block) memory (never the full N x N matrix per head) and supports
``backward``, double backward, ``torch.func.jvp``, ``torch.func.jvp(torch.func.grad(f))``
(forward-over-reverse HVPs) and ``torch.func.vmap`` over tangents.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import Tensor

from ._composite import DEFAULT_BLOCK
from ._function import BACKENDS, AttentionFunction

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
_BACKEND_CHOICES = ("auto", "eager", "triton")  # the ops' vocabulary (ops/_backend.py): auto|compiled|triton|eager


def _backend_name(backend: str) -> str:
    """The backend's current name: "torch" (before issue 16's vocabulary) is "eager", with a warning."""
    if backend == "torch":
        warnings.warn("fused_attention: backend='torch' is deprecated, use backend='eager' (the same composite "
                      "torch path)", DeprecationWarning, stacklevel=3)
        return "eager"
    return backend


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, attn_bias: Optional[Tensor],
                  scale: Optional[float], backend: str) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"fused_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"fused_attention: {name} must have shape (B, H, N, D), "
                             f"got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"fused_attention: {name} must be floating point, got {t.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"fused_attention: k and v must have the same shape, "
                         f"got k {tuple(k.shape)} and v {tuple(v.shape)}")
    if q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"fused_attention: q {tuple(q.shape)} and k {tuple(k.shape)} must agree "
                         f"in batch, heads and head dim (B, H, *, D)")
    if q.shape[-2] < 1 or k.shape[-2] < 1:
        raise ValueError("fused_attention: sequence lengths must be >= 1")
    head_dim = q.shape[-1]
    if backend == "triton" and head_dim not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"fused_attention: head dim D={head_dim} is not supported by the triton "
                         f"backend; expected one of {SUPPORTED_HEAD_DIMS} (backend='eager' takes any D)")
    tensors = [("q", q), ("k", k), ("v", v)] + ([("attn_bias", attn_bias)] if attn_bias is not None else [])
    for name, t in tensors[1:]:
        if name == "attn_bias" and not isinstance(t, Tensor):
            raise TypeError(f"fused_attention: attn_bias must be a tensor or None, "
                            f"got {type(t).__name__}")
        if t.dtype != q.dtype:
            raise TypeError(f"fused_attention: {name} has dtype {t.dtype} but q has {q.dtype}; "
                            "all inputs must share one dtype")
        if t.device != q.device:
            raise ValueError(f"fused_attention: {name} is on {t.device} but q is on {q.device}; "
                             "all inputs must be on one device")
    if attn_bias is not None:
        target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        try:
            ok = attn_bias.dim() <= 4 and torch.broadcast_shapes(attn_bias.shape, target) == target
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"fused_attention: attn_bias of shape {tuple(attn_bias.shape)} is not "
                             f"broadcastable to (B, H, N_q, N_k) = {target}")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise TypeError(f"fused_attention: scale must be a finite float or None, got {scale!r}")
    if backend not in _BACKEND_CHOICES:
        raise ValueError(f"fused_attention: backend must be one of {_BACKEND_CHOICES}, "
                         f"got {backend!r}")
    if backend == "triton" and q.dtype == torch.float64:
        raise TypeError("fused_attention: the triton backend supports float32/float16/bfloat16, "
                        "not float64 (use backend='eager')")


def resolve_backend(device: torch.device, backend: str = "auto",
                    dtype: torch.dtype = torch.float32, head_dim: int = 64) -> str:
    """'auto' picks Triton for CUDA tensors (float32/16/bf16, D in SUPPORTED_HEAD_DIMS), the
    composite torch path ("eager") otherwise (any D, any device)."""
    backend = _backend_name(backend)
    if backend == "auto":
        use_triton = device.type == "cuda" and dtype != torch.float64 and head_dim in SUPPORTED_HEAD_DIMS
        return "triton" if use_triton else "eager"
    return backend


def fused_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: Optional[float] = None,
                    attn_bias: Optional[Tensor] = None, backend: str = "auto",
                    block: int = DEFAULT_BLOCK) -> Tensor:
    """Non-causal attention ``softmax(scale * q @ k^T + attn_bias) @ v`` with HVP support.

    Args:
        q: (B, H, N_q, D) queries; any D on the torch path, D in {16, 32, 64, 128} for Triton.
        k, v: (B, H, N_k, D) keys and values (same dtype and device as q).
        scale: softmax scale, default ``1 / sqrt(D)`` as in SDPA.
        attn_bias: optional additive bias broadcastable to (B, H, N_q, N_k), e.g. an
            (H, N, N) relative-position bias; it may require grad.
        backend: "auto" (Triton on CUDA, composite torch on CPU), "eager" (the composite torch path;
            "torch" is its deprecated name) or "triton"
            (on CPU tensors the Triton kernels need ``TRITON_INTERPRET=1``).
        block: key-block size of the composite path (memory O(N_q * block) per head).

    Returns:
        (B, H, N_q, D) attention output.  Differentiable to second order: backward,
        double backward, torch.func.jvp, jvp of grad, and vmap over tangents.

    Example:
        >>> q = k = v = torch.randn(2, 3, 7, 16)
        >>> fused_attention(q, k, v).shape
        torch.Size([2, 3, 7, 16])
    """
    backend = _backend_name(backend)
    _check_inputs(q, k, v, attn_bias, scale, backend)
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"fused_attention: block must be a positive int, got {block!r}")
    scale = float(scale) if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    chosen = resolve_backend(q.device, backend, q.dtype, q.shape[-1])
    out, _lse = AttentionFunction.apply(q, k, v, attn_bias, scale, chosen, block)
    return out


__all__ = ["fused_attention", "SUPPORTED_HEAD_DIMS", "BACKENDS"]

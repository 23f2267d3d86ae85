"""Input checks shared by the feature-statistics ops: one strided (B, C, n, n) view of either layout."""
from __future__ import annotations

import math

import torch

_SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def as_square_maps(z: torch.Tensor, num_prefix_tokens: int = 0, *, name: str = "z") -> torch.Tensor:
    """View `z` as square maps (B, C, n, n) without copying.

    Accepts (B, C, H, W) feature maps (any strides, e.g. channels_last) with H == W, or
    (B, P + N, C) tokens with the first P = `num_prefix_tokens` tokens (class/distillation)
    skipped and N = n*n, token t = h*n + w (row-major, as in timm and the paper's rearrange).

    >>> as_square_maps(torch.zeros(2, 1 + 9, 4), 1).shape
    torch.Size([2, 4, 3, 3])
    """
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int):
        raise TypeError(f"num_prefix_tokens must be an int, got {type(num_prefix_tokens).__name__}")
    if num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
    if z.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(
            f"{name} must be a floating-point tensor (float32, float16, bfloat16 or float64), got {z.dtype}")
    if z.dim() == 4:
        if num_prefix_tokens != 0:
            raise ValueError(
                f"num_prefix_tokens applies to token inputs (B, P+N, C) only; {name} is 4-D "
                f"(B, C, H, W) {tuple(z.shape)}, so num_prefix_tokens must be 0, got {num_prefix_tokens}")
        if z.numel() == 0:
            raise ValueError(f"{name} is empty: shape {tuple(z.shape)}")
        height, width = z.shape[-2:]
        if height != width:
            raise ValueError(f"{name} must hold square maps (H == W), got H={height}, W={width} "
                             f"in shape {tuple(z.shape)}")
        return z
    if z.dim() == 3:
        batch, tokens, channels = z.shape
        if num_prefix_tokens > tokens:
            raise ValueError(f"num_prefix_tokens={num_prefix_tokens} exceeds the {tokens} tokens of "
                             f"{name} (B, P+N, C) {tuple(z.shape)}")
        count = tokens - num_prefix_tokens
        if batch == 0 or channels == 0 or count == 0:
            raise ValueError(f"{name} is empty after removing {num_prefix_tokens} prefix tokens: "
                             f"shape {tuple(z.shape)}")
        n = math.isqrt(count)
        if n * n != count:
            raise ValueError(
                f"{name} has {count} tokens after removing num_prefix_tokens={num_prefix_tokens} prefix "
                f"tokens, which is not a square number n*n (shape {tuple(z.shape)}); "
                f"is num_prefix_tokens right?")
        # (B, N, C) -> (B, C, N) -> (B, C, n, n): transpose and unflatten are views, never copies.
        return z[:, num_prefix_tokens:, :].transpose(1, 2).unflatten(2, (n, n))
    raise ValueError(f"{name} must be 4-D (B, C, H, W) feature maps or 3-D (B, P+N, C) tokens, "
                     f"got {z.dim()}-D shape {tuple(z.shape)}")


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """Statistics are computed and returned in float32 (float64 for float64 input)."""
    return torch.float64 if dtype == torch.float64 else torch.float32

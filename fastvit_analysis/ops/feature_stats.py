"""Feature-statistics ops: diagonal log-amplitude spectrum and per-map moments.

Each op is one Python function that runs the compiled kernel (`torch.ops.fastvit_analysis.*`,
C++/OpenMP on CPU, CUDA on GPU) or an exact eager-torch implementation, chosen by `backend`
(see `_backend.resolve_backend`).
"""
from __future__ import annotations

import functools
import math

import torch

from ..common.constants import LOG_EPS  # the paper's log(|F| + 1e-6)
from . import _extension
from ._backend import resolve_backend
from ._layout import as_square_maps, result_dtype


def _use_compiled(op: str, backend: str | None, maps: torch.Tensor) -> bool:
    choice = resolve_backend(backend)
    if choice == "eager":
        return False
    if torch.compiler.is_compiling():
        # While torch.compile traces, the extension cannot be built; use it if already loaded.
        if _extension.is_loaded() and _extension.has_kernel_for(op, maps.device):
            return True
        if choice == "compiled":
            raise _extension.ExtensionUnavailable(
                "backend='compiled' under torch.compile needs the extension loaded beforehand: call "
                "fastvit_analysis.ops.load_extension() before compiling")
        return False
    if choice == "compiled":
        _extension.require_extension()
        if not _extension.has_kernel_for(op, maps.device):
            raise _extension.ExtensionUnavailable(
                f"backend='compiled' but the fastvit_analysis extension has no {maps.device.type} "
                f"kernel for {op} (was it built without CUDA?)")
        return True
    if _extension.load_extension():
        return _extension.has_kernel_for(op, maps.device)
    _extension.warn_fallback_once()
    return False


@functools.lru_cache(maxsize=32)
def _diag_dft_matrix(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[n*n, 2K] real matrix W with x.flatten() @ W = (Re F(k, k), Im F(k, k)), k < K = ceil(n/2).

    F(k, k) = sum_{h,w} x[h, w] e^{-2 pi i k (h + w) / n}; twiddles from the exact residue mod n.
    """
    num_freq = (n + 1) // 2
    pos = torch.arange(n, dtype=torch.int64)
    diag_index = (pos[:, None] + pos[None, :]).reshape(-1, 1)  # h + w for position h*n + w
    k = torch.arange(num_freq, dtype=torch.int64)
    angle = (2.0 * math.pi / n) * torch.remainder(diag_index * k[None, :], n).to(torch.float64)
    return torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1).to(dtype=dtype, device=device)


def _diag_spectrum_eager(maps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(Re F(k, k), Im F(k, k)) of every map, [B, C, 2K], as one (batched) GEMM with the
    diagonal DFT matrix; channel-interleaved layouts (channels_last, tokens) are read in place."""
    batch, channels, n, _ = maps.shape
    x = maps.to(dtype)
    matrix = _diag_dft_matrix(n, dtype, maps.device)
    _, stride_c, stride_h, stride_w = x.stride()
    if stride_c == 1 and stride_w != 1 and stride_h == n * stride_w:
        positions = x.permute(0, 2, 3, 1).flatten(1, 2)  # (B, n*n, C), a view
        weights = matrix.t().expand(batch, *matrix.t().shape)
        return torch.bmm(weights, positions).transpose(1, 2)
    return (x.reshape(batch * channels, n * n) @ matrix).view(batch, channels, -1)


def _diag_log_amplitude_eager(maps: torch.Tensor, reduce: bool) -> torch.Tensor:
    dtype = result_dtype(maps.dtype)
    num_freq = (maps.shape[-1] + 1) // 2
    spectrum = _diag_spectrum_eager(maps, dtype)
    amplitude = torch.hypot(spectrum[..., :num_freq], spectrum[..., num_freq:])
    log_amp = torch.log(amplitude + LOG_EPS)
    return log_amp.mean(dim=(0, 1)) if reduce else log_amp


def _feature_moments_eager(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(maps.to(result_dtype(maps.dtype)), dim=(2, 3), correction=1)
    return mean, var


def diag_log_amplitude(z: torch.Tensor, num_prefix_tokens: int = 0, *, reduce: bool = True,
                       backend: str | None = None) -> torch.Tensor:
    """Mean diagonal log-amplitude spectrum a(k) = mean_{b,c} log(|F_bc(k, k)| + 1e-6).

    F_bc is the 2-D DFT of map z[b, c] (n x n); k = 0 .. ceil(n/2) - 1. The compiled kernel reads
    `z` once, in place, into the anti-diagonal sums s[m] and takes their length-n DFT (docs/methods.md §3a);
    the eager backend multiplies the maps by the [n*n, 2K] diagonal-DFT matrix. Both are exact.

    Args:
        z: (B, C, n, n) maps (any strides, e.g. channels_last) or (B, P + n*n, C) tokens;
            float32/float16/bfloat16 (accumulated in float32) or float64.
        num_prefix_tokens: P, class/distillation tokens to skip (token input only).
        reduce: True -> [K] mean over (b, c); False -> [B, C, K] per map.
        backend: "auto" | "compiled" | "eager" (default: $FASTVIT_OPS_BACKEND or "auto").

    Returns:
        float32 tensor (float64 for float64 input), [K] or [B, C, K], K = ceil(n/2).

    Example:
        >>> diag_log_amplitude(torch.randn(2, 3, 8, 8), backend="eager").shape
        torch.Size([4])
    """
    maps = as_square_maps(z, num_prefix_tokens)
    if not isinstance(reduce, bool):
        raise TypeError(f"reduce must be a bool, got {type(reduce).__name__}")
    if _use_compiled("diag_log_amplitude", backend, maps):
        return torch.ops.fastvit_analysis.diag_log_amplitude(maps, reduce)
    return _diag_log_amplitude_eager(maps, reduce)


def feature_moments(z: torch.Tensor, num_prefix_tokens: int = 0, *,
                    backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map mean and unbiased variance over spatial positions (or tokens).

    Args:
        z: (B, C, n, n) maps or (B, P + n*n, C) tokens, as in `diag_log_amplitude`.
        num_prefix_tokens: P, tokens to skip (token input only).
        backend: "auto" | "compiled" | "eager".

    Returns:
        (mean, var), each [B, C] float32 (float64 for float64 input); var uses N - 1
        (NaN for a single position, as torch.var).

    Example:
        >>> mean, var = feature_moments(torch.randn(2, 1 + 16, 5), 1, backend="eager")
        >>> var.shape
        torch.Size([2, 5])
    """
    maps = as_square_maps(z, num_prefix_tokens)
    if _use_compiled("feature_moments", backend, maps):
        mean, var = torch.ops.fastvit_analysis.feature_moments(maps)
        return mean, var
    return _feature_moments_eager(maps)

"""Per-latent feature statistics of the paper: relative log amplitude (docs/methods.md §3a) and
feature-map variance (docs/methods.md §3b), for (B, C, n, n) maps or (B, P + n*n, C) tokens."""
from __future__ import annotations

import torch

from ..ops import diag_log_amplitude, feature_moments


def relative_log_amplitude(z: torch.Tensor, num_prefix_tokens: int = 0, *, per_map: bool = False,
                           backend: str | None = None) -> torch.Tensor:
    """Relative log amplitude Δ(k) = a(k) − a(0) on the diagonal frequencies (k, k) [docs/methods.md §3a].

    a(k) is the mean over (b, c) of log(|FFT2(z[b, c])(k, k)| + 1e-6), k = 0 .. ceil(n/2) − 1,
    exactly what the paper's pipeline (fft2 → abs → log → mean → roll → diag[n/2:]) gives.
    Plot Δ against k / (n/2) · π.

    Args:
        z: (B, C, n, n) feature maps (any strides) or (B, P + n*n, C) tokens.
        num_prefix_tokens: P class/distillation tokens to drop from token input.
        per_map: False -> [K]; True -> [B, C, K] with each map's own Δ (its log amplitude
            minus its own DC term).
        backend: "auto" | "compiled" | "eager" (default $FASTVIT_OPS_BACKEND or "auto").

    Returns:
        float32 tensor (float64 for float64 input) of length K = ceil(n/2), Δ(0) = 0.

    Example:
        >>> import torch, fastvit_analysis as fa
        >>> fa.relative_log_amplitude(torch.randn(8, 16, 14, 14)).shape
        torch.Size([7])
        >>> fa.relative_log_amplitude(torch.randn(2, 1 + 196, 32), num_prefix_tokens=1).shape
        torch.Size([7])
    """
    log_amp = diag_log_amplitude(z, num_prefix_tokens, reduce=not per_map, backend=backend)
    return log_amp - log_amp[..., :1]


def feature_map_variance(z: torch.Tensor, num_prefix_tokens: int = 0, *, per_map: bool = False,
                         backend: str | None = None) -> torch.Tensor:
    """Feature-map variance v = mean over (b, c) of the unbiased variance over positions [docs/methods.md §3b].

    Args:
        z: (B, C, H, W) with H == W, or (B, P + N, C) tokens (P prefix tokens excluded, N = n*n).
        num_prefix_tokens: P class/distillation tokens to drop from token input.
        per_map: False -> scalar; True -> [B, C] per-map variances.
        backend: "auto" | "compiled" | "eager".

    Returns:
        0-d float32 tensor (float64 for float64 input), or [B, C] with per_map=True.

    Example:
        >>> import torch, fastvit_analysis as fa
        >>> float(fa.feature_map_variance(torch.ones(2, 3, 4, 4)))
        0.0
    """
    _, var = feature_moments(z, num_prefix_tokens, backend=backend)
    return var if per_map else var.mean()

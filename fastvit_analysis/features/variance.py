"""Feature-map variance over a whole loader (SPEC §3b, paper Fig. 9).

v = mean over all maps (b, c) of the dataset of the unbiased variance over spatial positions (tokens,
prefix tokens excluded) of z[b, c]; plotted against normalised depth with MSA and down-sampling blocks
shaded.

Example:
    >>> import timm, torch, fastvit_analysis as fa
    >>> net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1])
    >>> res = fa.variance_analysis(net, (torch.randn(4, 3, 64, 64), torch.zeros(4)), progress=False)
    >>> res.names[:2]
    ['maxpool', 'layer1.0']
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..common.results import Result
from ..ops import feature_moments
from .extract import LatentExtractor, LatentSpec


@dataclass
class VarianceResult(Result):
    """Per latent: name, kind, normalised depth i/(L−1) and the mean per-map variance."""

    names: list[str]
    kinds: list[str]
    depths: list[float]
    variance: list[float]
    num_samples: int = 0

    def plot(self, **kwargs):
        from .plot import plot_variance

        return plot_variance(self, **kwargs)


def per_map_variance(z: Tensor, prefix_tokens: int = 0, *, backend: str | None = None) -> Tensor:
    """[B, C] unbiased variance of each map over its positions (tokens after the prefix); any H, W."""
    if z.ndim == 4 and z.shape[-1] != z.shape[-2]:
        return torch.var(z.to(torch.float64 if z.dtype == torch.float64 else torch.float32).flatten(2),
                         dim=-1, correction=1)
    if z.ndim == 3:
        count = z.shape[1] - prefix_tokens
        if count <= 0 or math.isqrt(count) ** 2 != count:
            return torch.var(z[:, prefix_tokens:].float(), dim=1, correction=1)
    if z.ndim not in (3, 4):
        raise ValueError(f"feature-map variance needs (B, C, H, W) maps or (B, N, C) tokens, got "
                         f"shape {tuple(z.shape)}")
    return feature_moments(z, prefix_tokens if z.ndim == 3 else 0, backend=backend)[1]


class VarianceAccumulator:
    """Streaming per-latent sums of per-map variances (a `LatentExtractor` callback), then `result(...)`."""

    def __init__(self, specs: Sequence[LatentSpec], *, backend: str | None = None):
        self.backend = backend
        self.sums = {s.name: 0.0 for s in specs}
        self.counts = {s.name: 0 for s in specs}

    def __call__(self, spec: LatentSpec, z: Tensor) -> None:
        var = per_map_variance(z, spec.prefix_tokens if z.ndim == 3 else 0, backend=self.backend)
        self.sums[spec.name] += float(var.to(torch.float64).sum())
        self.counts[spec.name] += var.numel()

    def result(self, specs: Sequence[LatentSpec], depths: Sequence[float], num_samples: int) -> VarianceResult:
        variance = [self.sums[s.name] / self.counts[s.name] if self.counts[s.name] else float("nan")
                    for s in specs]
        return VarianceResult(names=[s.name for s in specs], kinds=[s.kind for s in specs], depths=list(depths),
                              variance=variance, num_samples=num_samples)


def variance_analysis(model: nn.Module, data: Any, *, layers: Sequence[str | LatentSpec] | None = None,
                      kinds: Mapping[str, str] | None = None, backend: str | None = None,
                      progress: bool = True) -> VarianceResult:
    """Feature-map variance of every latent of `model` over all batches of `data`.

    Args:
        model: a vision model (see `extract_features` for families, `layers` and `kinds`).
        data: one (inputs, targets) batch or an iterable of batches.
        backend: ops backend for the moments ("auto" | "compiled" | "eager").
        progress: show a progress bar over the batches.

    Returns:
        VarianceResult (names, kinds, depths i/(L−1), variance per latent). Use `feature_statistics`
        to get Fourier and variance results from one pass.
    """
    extractor = LatentExtractor(model, layers, kinds=kinds)
    accumulator = VarianceAccumulator(extractor.specs, backend=backend)
    samples = extractor.stream(data, accumulator, progress=progress, desc="variance")
    return accumulator.result(extractor.specs, extractor.depths(), samples)

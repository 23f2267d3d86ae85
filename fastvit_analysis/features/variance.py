"""Feature-map variance over a whole loader (docs/methods.md §3b, paper Fig. 9).

v = mean over all maps (b, c) of the dataset of the unbiased variance over spatial positions (tokens,
prefix tokens excluded) of z[b, c]; plotted against normalised depth with MSA and down-sampling blocks
shaded. Intervals (docs/methods.md §5): each batch's own mean variance per latent is kept; the 95% interval is a
percentile bootstrap over BATCHES (weighted by batch size, fixed seed), NaN with fewer than 8 batches.

Example:
    >>> import timm, torch, fastvit_analysis as fa
    >>> net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1])
    >>> res = fa.variance_analysis(net, (torch.randn(4, 3, 64, 64), torch.zeros(4)), progress=False)
    >>> res.names[:2]
    ['maxpool', 'layer1.0']
    >>> res.summary()["variance/last"].n  # one batch: n = 1, NaN interval
    1
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..common.deprecation import renamed_kwargs
from ..common.intervals import Estimate, bootstrap_interval, estimates_to_dict
from ..common.results import Result
from ..ops import feature_moments
from .extract import LatentExtractor, LatentSpec
from .fourier import MIN_BATCHES


@dataclass
class VarianceResult(Result):
    """Per latent: name, kind, normalised depth i/(L−1) and the mean per-map variance.

    For the intervals: `batch_sizes` (samples per batch), `batch_variance[b][l]` (the mean per-map
    variance of latent l over batch b) and `variance_ci95[l] = [lo, hi]` (bootstrap over batches; NaN
    with fewer than 8 batches). `summary()` gives the key numbers as Estimates.
    """

    names: list[str]
    kinds: list[str]
    depths: list[float]
    variance: list[float]
    num_samples: int = 0
    num_batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    batch_variance: list[list[float]] = field(default_factory=list)
    variance_ci95: list[list[float]] = field(default_factory=list)
    bootstrap_seed: int = 0
    num_resamples: int = 1000

    def summary(self) -> dict[str, Estimate]:
        """Mean feature-map variance with its 95% interval (n = batches), for the last latent
        ("variance/last") and every latent ("variance/<name>")."""
        ci = self.variance_ci95 or [[math.nan, math.nan]] * len(self.names)
        per_latent = {f"variance/{name}": Estimate(float(v), (float(c[0]), float(c[1])), self.num_batches)
                      for name, v, c in zip(self.names, self.variance, ci)}
        last = {"variance/last": per_latent[f"variance/{self.names[-1]}"]} if self.names else {}
        return last | per_latent

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"summary": estimates_to_dict(self.summary())}

    def plot(self, **kwargs):
        """Variance against depth with its band (`fastvit_analysis.plot.features.variance`) -> Figure."""
        from ..plot.features import variance

        return variance(self, **kwargs)


@renamed_kwargs(prefix_tokens="num_prefix_tokens")
def per_map_variance(z: Tensor, num_prefix_tokens: int = 0, *, backend: str | None = None) -> Tensor:
    """[B, C] unbiased variance of each map over its positions (tokens after the prefix); any H, W."""
    if z.ndim == 4 and z.shape[-1] != z.shape[-2]:
        return torch.var(z.to(torch.float64 if z.dtype == torch.float64 else torch.float32).flatten(2),
                         dim=-1, correction=1)
    if z.ndim == 3:
        count = z.shape[1] - num_prefix_tokens
        if count <= 0 or math.isqrt(count) ** 2 != count:
            return torch.var(z[:, num_prefix_tokens:].float(), dim=1, correction=1)
    if z.ndim not in (3, 4):
        raise ValueError(f"feature-map variance needs (B, C, H, W) maps or (B, N, C) tokens, got "
                         f"shape {tuple(z.shape)}")
    return feature_moments(z, num_prefix_tokens if z.ndim == 3 else 0, backend=backend)[1]


class VarianceAccumulator:
    """Streaming per-latent sums of per-map variances (a `LatentExtractor` callback), then `result(...)`."""

    def __init__(self, specs: Sequence[LatentSpec], *, backend: str | None = None, bootstrap_seed: int = 0,
                 num_resamples: int = 1000):
        if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 200:
            raise ValueError(f"num_resamples must be an integer >= 200 (docs/methods.md §5), got {num_resamples!r}")
        self.backend = backend
        self.bootstrap_seed, self.num_resamples = int(bootstrap_seed), num_resamples
        self.sums = {s.name: 0.0 for s in specs}
        self.counts = {s.name: 0 for s in specs}
        self.batch_means: dict[str, list[float]] = {s.name: [] for s in specs}
        self.batch_sizes: list[int] = []

    def __call__(self, spec: LatentSpec, z: Tensor) -> None:
        var = per_map_variance(z, spec.num_prefix_tokens if z.ndim == 3 else 0, backend=self.backend)
        total = float(var.to(torch.float64).sum())
        means = self.batch_means[spec.name]
        if len(means) == len(self.batch_sizes):  # the first latent of a new batch
            self.batch_sizes.append(int(z.shape[0]))
        self.sums[spec.name] += total
        self.counts[spec.name] += var.numel()
        means.append(total / var.numel() if var.numel() else math.nan)

    def result(self, specs: Sequence[LatentSpec], depths: Sequence[float], num_samples: int) -> VarianceResult:
        variance = [self.sums[s.name] / self.counts[s.name] if self.counts[s.name] else float("nan")
                    for s in specs]
        for s in specs:
            if len(self.batch_means[s.name]) != len(self.batch_sizes):
                raise RuntimeError(f"latent {s.name!r} was produced in {len(self.batch_means[s.name])} of "
                                   f"{len(self.batch_sizes)} batches")
        per_batch = np.array([self.batch_means[s.name] for s in specs], dtype=np.float64).T.reshape(
            len(self.batch_sizes), len(specs))
        ci = np.full((len(specs), 2), np.nan)
        if per_batch.size:
            ci = bootstrap_interval(per_batch, weights=np.asarray(self.batch_sizes, dtype=np.float64),
                                    seed=self.bootstrap_seed, num_resamples=self.num_resamples,
                                    min_units=MIN_BATCHES).ci95
        return VarianceResult(names=[s.name for s in specs], kinds=[s.kind for s in specs], depths=list(depths),
                              variance=variance, num_samples=num_samples, num_batches=len(self.batch_sizes),
                              batch_sizes=list(self.batch_sizes), batch_variance=per_batch.tolist(),
                              variance_ci95=ci.tolist(), bootstrap_seed=self.bootstrap_seed,
                              num_resamples=self.num_resamples)


def variance_analysis(model: nn.Module, data: Any, *, layers: Sequence[str | LatentSpec] | None = None,
                      kinds: Mapping[str, str] | None = None, backend: str | None = None,
                      progress: bool = True, bootstrap_seed: int = 0, num_resamples: int = 1000) -> VarianceResult:
    """Feature-map variance of every latent of `model` over all batches of `data`.

    Args:
        model: a vision model (see `extract_features` for families, `layers` and `kinds`).
        data: one (inputs, targets) batch or an iterable of batches.
        backend: ops backend for the moments ("auto" | "compiled" | "eager").
        progress: show a progress bar over the batches.
        bootstrap_seed, num_resamples: the bootstrap over batches behind `variance_ci95` and
            `summary()` (>= 8 batches for an interval; fixed seed: same data, same digits).

    Returns:
        VarianceResult (names, kinds, depths i/(L−1), variance per latent and its interval). Use
        `feature_statistics` to get Fourier and variance results from one pass.
    """
    VarianceAccumulator([], num_resamples=num_resamples)  # validate before running anything
    extractor = LatentExtractor(model, layers, kinds=kinds)
    accumulator = VarianceAccumulator(extractor.specs, backend=backend, bootstrap_seed=bootstrap_seed,
                                      num_resamples=num_resamples)
    samples = extractor.stream(data, accumulator, progress=progress, desc="variance")
    return accumulator.result(extractor.specs, extractor.depths(), samples)

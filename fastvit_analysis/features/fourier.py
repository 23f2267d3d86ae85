"""Fourier analysis of feature maps over a whole loader (docs/methods.md §3a, paper Fig. 2a and 8).

For every latent: a(k) = mean over all maps (b, c) of the dataset of log(|FFT2(z[b, c])(k, k)| + 1e-6),
Δ(k) = a(k) − a(0), at frequencies k / (n/2) · π, k = 0 … ⌈n/2⌉ − 1. Batches of any size are combined
as sums over maps (not a mean of batch means). `spectrum="radial"` offers, for non-square maps, the
radially averaged log spectrum of the full FFT instead of the diagonal.

Intervals (docs/methods.md §5): each batch's own mean log amplitude is kept; the 95% interval of Δ(k) is a
percentile bootstrap over BATCHES (weighted by batch size, fixed seed), NaN with fewer than
`MIN_BATCHES` = 8 batches (pass a DataLoader, not one batch, to get intervals).

Example:
    >>> import timm, torch, fastvit_analysis as fa
    >>> vit = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=32,
    ...                                                          depth=2, num_heads=2)
    >>> res = fa.fourier_analysis(vit, (torch.randn(8, 3, 32, 32), torch.zeros(8)), progress=False)
    >>> res.names[:2], len(res.delta_log_amplitude[0])
    (['patch_embed', 'blocks.0:msa'], 2)
    >>> res.summary()["high_frequency/last"].n  # one batch: n = 1, NaN interval
    1
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..common.constants import LOG_EPS  # noqa: E402
from ..common.intervals import Estimate, bootstrap_interval, estimates_to_dict
from ..common.results import Result
from ..ops import diag_log_amplitude
from .extract import LatentExtractor, LatentSpec, to_feature_map

SPECTRA = ("diagonal", "radial")
MIN_BATCHES = 8  # fewer batches: NaN intervals (a percentile bootstrap over < 8 units is too coarse)


@dataclass
class FourierResult(Result):
    """Per latent: name, kind, normalised depth i/(L−1), frequencies (radians, k/(n/2)·π), the mean log
    amplitude a(k) and Δ(k) = a(k) − a(0).

    For the intervals: `batch_sizes` (samples per batch), `batch_log_amplitude[l][b]` (latent l's mean
    log amplitude over the maps of batch b, length K_l), and `delta_ci95[l][k] = [lo, hi]` (bootstrap
    over batches; None/NaN with fewer than 8 batches). `summary()` gives the key numbers as Estimates.
    """

    names: list[str]
    kinds: list[str]
    depths: list[float]
    frequencies: list[list[float]]
    log_amplitude: list[list[float]]
    delta_log_amplitude: list[list[float]]
    spectrum: str = "diagonal"
    num_samples: int = 0
    num_batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    batch_log_amplitude: list[list[list[float]]] = field(default_factory=list)
    delta_ci95: list[list[list[float]]] = field(default_factory=list)
    bootstrap_seed: int = 0
    num_resamples: int = 1000

    @property
    def high_frequency(self) -> list[float]:
        """Δ at each latent's highest frequency (paper: plotted against normalised depth)."""
        return [d[-1] for d in self.delta_log_amplitude]

    @property
    def high_frequency_ci95(self) -> np.ndarray:
        """(L, 2) interval of Δ at each latent's highest frequency (NaN when not available)."""
        if not self.delta_ci95:
            return np.full((len(self.names), 2), np.nan)
        return np.array([ci[-1] for ci in self.delta_ci95], dtype=np.float64)

    @property
    def batch_high_frequency(self) -> np.ndarray:
        """(num_batches, L) per-batch Δ at each latent's highest frequency: the units to resample for
        contrasts (e.g. `bootstrap_difference` of two models on the same batches, weights
        `batch_sizes`). Its batch-size-weighted mean over batches is `high_frequency`."""
        if not self.batch_log_amplitude:
            return np.empty((self.num_batches, 0))
        return np.stack([np.asarray(b, dtype=np.float64)[:, -1] - np.asarray(b, dtype=np.float64)[:, 0]
                         for b in self.batch_log_amplitude], axis=1)

    def summary(self) -> dict[str, Estimate]:
        """Δ log amplitude at the highest frequency with its 95% interval (n = batches): for the last
        latent ("high_frequency/last") and for every latent ("high_frequency/<name>")."""
        ci = self.high_frequency_ci95
        per_latent = {f"high_frequency/{name}": Estimate(float(v), (float(c[0]), float(c[1])), self.num_batches)
                      for name, v, c in zip(self.names, self.high_frequency, ci)}
        last = per_latent[f"high_frequency/{self.names[-1]}"] if self.names else None
        return ({"high_frequency/last": last} if last is not None else {}) | per_latent

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"summary": estimates_to_dict(self.summary())}

    def plot(self, **kwargs):
        """Δ log amplitude against frequency per latent (`fastvit_analysis.plot.features.fourier`) -> Figure."""
        from ..plot.features import fourier

        return fourier(self, **kwargs)

    def plot_high_frequency(self, **kwargs):
        """Δ at the highest frequency against depth (`fastvit_analysis.plot.features.high_frequency`)."""
        from ..plot.features import high_frequency

        return high_frequency(self, **kwargs)


def diagonal_frequencies(n: int) -> list[float]:
    """k / (n/2) · π for k = 0 … ⌈n/2⌉ − 1."""
    return [k / (n / 2) * math.pi for k in range((n + 1) // 2)]


def _radial_bins(height: int, width: int, device: torch.device) -> tuple[Tensor, int]:
    """Integer radius (in units of the fundamental of the shorter side) of every FFT bin."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64) * 2.0  # in [-1, 1): 1 = Nyquist
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64) * 2.0
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # 1.0 = π
    half = min(height, width) / 2
    num = (min(height, width) + 1) // 2
    return torch.round(radius * half).to(torch.int64), num


class _LatentAccumulator:
    """Sums of per-map statistics of one latent across batches."""

    def __init__(self, spec: LatentSpec):
        self.spec = spec
        self.count = 0
        self.total: Tensor | None = None
        self.shape: tuple[int, ...] | None = None
        self.batch_means: list[Tensor] = []  # each batch's own mean, for the bootstrap over batches

    def add(self, value: Tensor, maps: int) -> None:
        value = value.detach().to(torch.float64)
        self.total = value * maps if self.total is None else self.total + value * maps
        self.count += maps
        self.batch_means.append(value)


def _spatial_shape(z: Tensor, spec: LatentSpec) -> tuple[int, int]:
    if z.ndim == 4:
        return int(z.shape[-2]), int(z.shape[-1])
    if z.ndim == 3:
        count = z.shape[1] - spec.num_prefix_tokens
        side = math.isqrt(max(count, 0))
        return (side, side) if side * side == count else (count, 1)
    raise ValueError(f"latent {spec.name!r} has shape {tuple(z.shape)}: Fourier analysis needs feature maps "
                     f"(B, C, H, W) or tokens (B, N, C)")


class FourierAccumulator:
    """Streaming per-latent sums of log amplitudes: call with (spec, latent) for every latent of every
    batch (a `LatentExtractor` callback), then `result(...)`."""

    def __init__(self, specs: Sequence[LatentSpec], *, spectrum: str = "diagonal", backend: str | None = None,
                 bootstrap_seed: int = 0, num_resamples: int = 1000):
        if spectrum not in SPECTRA:
            raise ValueError(f"spectrum must be one of {SPECTRA}, got {spectrum!r}")
        if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 200:
            raise ValueError(f"num_resamples must be an integer >= 200 (docs/methods.md §5), got {num_resamples!r}")
        self.spectrum, self.backend = spectrum, backend
        self.bootstrap_seed, self.num_resamples = int(bootstrap_seed), num_resamples
        self.acc = {s.name: _LatentAccumulator(s) for s in specs}
        self.batch_sizes: list[int] = []

    def __call__(self, spec: LatentSpec, z: Tensor) -> None:
        height, width = _spatial_shape(z, spec)
        a = self.acc[spec.name]
        if a.shape is not None and a.shape != (height, width):
            raise ValueError(f"latent {spec.name!r} changed spatial size between batches: {a.shape} -> "
                             f"{(height, width)}; use inputs of one size")
        a.shape = (height, width)
        if len(a.batch_means) == len(self.batch_sizes):  # the first latent of a new batch
            self.batch_sizes.append(int(z.shape[0]))
        maps_count = z.shape[0] * (z.shape[1] if z.ndim == 4 else z.shape[2])
        if self.spectrum == "diagonal":
            if height != width:
                raise ValueError(f"latent {spec.name!r} has non-square {height}x{width} maps; the diagonal "
                                 f"spectrum needs H == W: use spectrum='radial'")
            prefix = spec.num_prefix_tokens if z.ndim == 3 else 0
            a.add(diag_log_amplitude(z, prefix, backend=self.backend), maps_count)
        else:
            maps = to_feature_map(z, spec.num_prefix_tokens) if z.ndim == 3 else z
            work = torch.float64 if maps.dtype == torch.float64 else torch.float32
            log_amp = torch.log(torch.fft.fft2(maps.to(work)).abs() + LOG_EPS)
            a.add(log_amp.mean(dim=(0, 1)), maps_count)

    def result(self, specs: Sequence[LatentSpec], depths: Sequence[float], num_samples: int) -> FourierResult:
        names, log_amps, deltas, freqs, batch_amps, delta_cis = [], [], [], [], [], []
        weights = np.asarray(self.batch_sizes, dtype=np.float64)
        for spec in specs:
            a = self.acc[spec.name]
            if a.total is None:
                raise RuntimeError(f"latent {spec.name!r} was never produced by the forward pass")
            if len(a.batch_means) != len(self.batch_sizes):
                raise RuntimeError(f"latent {spec.name!r} was produced in {len(a.batch_means)} of "
                                   f"{len(self.batch_sizes)} batches")
            mean = a.total / a.count
            per_batch = torch.stack(a.batch_means)  # (num_batches, K) or (num_batches, H, W)
            height, width = a.shape
            if self.spectrum == "diagonal":
                log_amp = mean
                freq = diagonal_frequencies(height)
            else:
                log_amp, freq = _radial_average(mean[None], height, width)
                log_amp = log_amp[0]
                per_batch, _ = _radial_average(per_batch, height, width)
            per_batch = per_batch.cpu().numpy()
            interval = bootstrap_interval(per_batch - per_batch[:, :1], weights=weights, seed=self.bootstrap_seed,
                                          num_resamples=self.num_resamples, min_units=MIN_BATCHES)
            names.append(spec.name)
            log_amps.append(log_amp.cpu().tolist())
            deltas.append((log_amp - log_amp[0]).cpu().tolist())
            freqs.append(freq)
            batch_amps.append(per_batch.tolist())
            delta_cis.append(interval.ci95.tolist())
        return FourierResult(names=names, kinds=[s.kind for s in specs], depths=list(depths),
                             frequencies=freqs, log_amplitude=log_amps, delta_log_amplitude=deltas,
                             spectrum=self.spectrum, num_samples=num_samples, num_batches=len(self.batch_sizes),
                             batch_sizes=list(self.batch_sizes), batch_log_amplitude=batch_amps,
                             delta_ci95=delta_cis, bootstrap_seed=self.bootstrap_seed,
                             num_resamples=self.num_resamples)


def _radial_average(log_amp: Tensor, height: int, width: int) -> tuple[Tensor, list[float]]:
    """(N, H, W) log amplitudes -> (N, K) radially averaged, and the frequencies k/(n/2)·π."""
    bins, num = _radial_bins(height, width, log_amp.device)
    flat_bins = bins.flatten()
    keep = flat_bins < num
    flat = log_amp.reshape(log_amp.shape[0], -1)[:, keep]
    sums = torch.zeros(log_amp.shape[0], num, dtype=torch.float64, device=log_amp.device).index_add_(
        1, flat_bins[keep], flat)
    counts = torch.bincount(flat_bins[keep], minlength=num).to(torch.float64)
    half = min(height, width) / 2
    return sums / counts, [k / half * math.pi for k in range(num)]


def fourier_analysis(model: nn.Module, data: Any, *, layers: Sequence[str | LatentSpec] | None = None,
                     kinds: Mapping[str, str] | None = None, spectrum: str = "diagonal",
                     backend: str | None = None, progress: bool = True, bootstrap_seed: int = 0,
                     num_resamples: int = 1000) -> FourierResult:
    """Relative log amplitude Δ(k) of every latent of `model` over all batches of `data`.

    Args:
        model: a vision model (see `extract_features` for the families and `layers`/`kinds`).
        data: one (inputs, targets) batch or an iterable of batches (a DataLoader).
        spectrum: "diagonal" (paper: frequencies (k, k), square maps) or "radial" (radially averaged
            log spectrum of the full FFT; works for non-square maps).
        backend: ops backend for the diagonal spectrum ("auto" | "compiled" | "eager").
        progress: show a progress bar over the batches.
        bootstrap_seed, num_resamples: the bootstrap over batches behind `delta_ci95` and `summary()`
            (>= 8 batches for an interval; fixed seed, so the same data gives the same digits).

    Returns:
        FourierResult with per-latent names, kinds, depths i/(L−1), frequencies k/(n/2)·π, a(k), Δ(k)
        and their intervals. Use `feature_statistics` to get Fourier and variance results from one pass.
    """
    options = dict(spectrum=spectrum, bootstrap_seed=bootstrap_seed, num_resamples=num_resamples)
    FourierAccumulator([], **options)  # validate before running anything
    extractor = LatentExtractor(model, layers, kinds=kinds)
    accumulator = FourierAccumulator(extractor.specs, backend=backend, **options)
    samples = extractor.stream(data, accumulator, progress=progress, desc="fourier")
    return accumulator.result(extractor.specs, extractor.depths(), samples)

"""Fourier analysis of feature maps over a whole loader (SPEC §3a, paper Fig. 2a and 8).

For every latent: a(k) = mean over all maps (b, c) of the dataset of log(|FFT2(z[b, c])(k, k)| + 1e-6),
Δ(k) = a(k) − a(0), at frequencies k / (n/2) · π, k = 0 … ⌈n/2⌉ − 1. Batches of any size are combined
as sums over maps (not a mean of batch means). `spectrum="radial"` offers, for non-square maps, the
radially averaged log spectrum of the full FFT instead of the diagonal.

Example:
    >>> import timm, torch, fastvit_analysis as fa
    >>> vit = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=32,
    ...                                                          depth=2, num_heads=2)
    >>> res = fa.fourier_analysis(vit, (torch.randn(8, 3, 32, 32), torch.zeros(8)), progress=False)
    >>> res.names[:2], len(res.delta_log_amplitude[0])
    (['patch_embed', 'blocks.0:msa'], 2)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..common.results import Result
from ..ops import diag_log_amplitude
from .extract import LatentExtractor, LatentSpec, to_feature_map

from ..common.constants import LOG_EPS  # noqa: E402
SPECTRA = ("diagonal", "radial")


@dataclass
class FourierResult(Result):
    """Per latent: name, kind, normalised depth i/(L−1), frequencies (radians, k/(n/2)·π), the mean log
    amplitude a(k) and Δ(k) = a(k) − a(0)."""

    names: list[str]
    kinds: list[str]
    depths: list[float]
    frequencies: list[list[float]]
    log_amplitude: list[list[float]]
    delta_log_amplitude: list[list[float]]
    spectrum: str = "diagonal"
    num_samples: int = 0

    @property
    def high_frequency(self) -> list[float]:
        """Δ at each latent's highest frequency (paper: plotted against normalised depth)."""
        return [d[-1] for d in self.delta_log_amplitude]

    def plot(self, **kwargs):
        from .plot import plot_fourier

        return plot_fourier(self, **kwargs)

    def plot_high_frequency(self, **kwargs):
        from .plot import plot_high_frequency

        return plot_high_frequency(self, **kwargs)


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

    def add(self, value: Tensor, maps: int) -> None:
        value = value.detach().to(torch.float64)
        self.total = value * maps if self.total is None else self.total + value * maps
        self.count += maps


def _spatial_shape(z: Tensor, spec: LatentSpec) -> tuple[int, int]:
    if z.ndim == 4:
        return int(z.shape[-2]), int(z.shape[-1])
    if z.ndim == 3:
        count = z.shape[1] - spec.prefix_tokens
        side = math.isqrt(max(count, 0))
        return (side, side) if side * side == count else (count, 1)
    raise ValueError(f"latent {spec.name!r} has shape {tuple(z.shape)}: Fourier analysis needs feature maps "
                     f"(B, C, H, W) or tokens (B, N, C)")


class FourierAccumulator:
    """Streaming per-latent sums of log amplitudes: call with (spec, latent) for every latent of every
    batch (a `LatentExtractor` callback), then `result(...)`."""

    def __init__(self, specs: Sequence[LatentSpec], *, spectrum: str = "diagonal", backend: str | None = None):
        if spectrum not in SPECTRA:
            raise ValueError(f"spectrum must be one of {SPECTRA}, got {spectrum!r}")
        self.spectrum, self.backend = spectrum, backend
        self.acc = {s.name: _LatentAccumulator(s) for s in specs}

    def __call__(self, spec: LatentSpec, z: Tensor) -> None:
        height, width = _spatial_shape(z, spec)
        a = self.acc[spec.name]
        if a.shape is not None and a.shape != (height, width):
            raise ValueError(f"latent {spec.name!r} changed spatial size between batches: {a.shape} -> "
                             f"{(height, width)}; use inputs of one size")
        a.shape = (height, width)
        maps_count = z.shape[0] * (z.shape[1] if z.ndim == 4 else z.shape[2])
        if self.spectrum == "diagonal":
            if height != width:
                raise ValueError(f"latent {spec.name!r} has non-square {height}x{width} maps; the diagonal "
                                 f"spectrum needs H == W: use spectrum='radial'")
            prefix = spec.prefix_tokens if z.ndim == 3 else 0
            a.add(diag_log_amplitude(z, prefix, backend=self.backend), maps_count)
        else:
            maps = to_feature_map(z, spec.prefix_tokens) if z.ndim == 3 else z
            work = torch.float64 if maps.dtype == torch.float64 else torch.float32
            log_amp = torch.log(torch.fft.fft2(maps.to(work)).abs() + LOG_EPS)
            a.add(log_amp.mean(dim=(0, 1)), maps_count)

    def result(self, specs: Sequence[LatentSpec], depths: Sequence[float], num_samples: int) -> FourierResult:
        names, log_amps, deltas, freqs = [], [], [], []
        for spec in specs:
            a = self.acc[spec.name]
            if a.total is None:
                raise RuntimeError(f"latent {spec.name!r} was never produced by the forward pass")
            mean = a.total / a.count
            height, width = a.shape
            if self.spectrum == "diagonal":
                log_amp = mean
                freq = diagonal_frequencies(height)
            else:
                bins, num = _radial_bins(height, width, mean.device)
                flat_bins = bins.flatten()
                keep = flat_bins < num
                sums = torch.zeros(num, dtype=torch.float64, device=mean.device).index_add_(
                    0, flat_bins[keep], mean.flatten()[keep])
                counts = torch.bincount(flat_bins[keep], minlength=num).to(torch.float64)
                log_amp = sums / counts
                half = min(height, width) / 2
                freq = [k / half * math.pi for k in range(num)]
            names.append(spec.name)
            log_amps.append(log_amp.cpu().tolist())
            deltas.append((log_amp - log_amp[0]).cpu().tolist())
            freqs.append(freq)
        return FourierResult(names=names, kinds=[s.kind for s in specs], depths=list(depths),
                             frequencies=freqs, log_amplitude=log_amps, delta_log_amplitude=deltas,
                             spectrum=self.spectrum, num_samples=num_samples)


def fourier_analysis(model: nn.Module, data: Any, *, layers: Sequence[str | LatentSpec] | None = None,
                     kinds: Mapping[str, str] | None = None, spectrum: str = "diagonal",
                     backend: str | None = None, progress: bool = True) -> FourierResult:
    """Relative log amplitude Δ(k) of every latent of `model` over all batches of `data`.

    Args:
        model: a vision model (see `extract_features` for the families and `layers`/`kinds`).
        data: one (inputs, targets) batch or an iterable of batches (a DataLoader).
        spectrum: "diagonal" (paper: frequencies (k, k), square maps) or "radial" (radially averaged
            log spectrum of the full FFT; works for non-square maps).
        backend: ops backend for the diagonal spectrum ("auto" | "compiled" | "eager").
        progress: show a progress bar over the batches.

    Returns:
        FourierResult with per-latent names, kinds, depths i/(L−1), frequencies k/(n/2)·π, a(k), Δ(k).
        Use `feature_statistics` to get Fourier and variance results from one pass.
    """
    FourierAccumulator([], spectrum=spectrum)  # validate before running anything
    extractor = LatentExtractor(model, layers, kinds=kinds)
    accumulator = FourierAccumulator(extractor.specs, spectrum=spectrum, backend=backend)
    samples = extractor.stream(data, accumulator, progress=progress, desc="fourier")
    return accumulator.result(extractor.specs, extractor.depths(), samples)

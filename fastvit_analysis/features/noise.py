"""Robustness to frequency-based noise (SPEC §3d, paper Fig. 2b).

δ = ε·sign(N(0, 1)) per pixel and channel; in the centred 2-D spectrum of δ keep only a square annulus
around DC (outer side 2⌊(f+w)·H/(2π)⌋, inner side 2⌊(f−w)·H/(2π)⌋, clipped to [0, H]); transform back
and take the real part: δ_f. The even-sized square is not symmetric about DC, so the real part also
carries the mask's conjugate mirror (the reference behaviour). ΔAcc(f) = acc(x + δ_f) − acc(x), in %.

Example:
    >>> import torch
    >>> from fastvit_analysis import frequency_noise
    >>> x = torch.zeros(2, 3, 32, 32)
    >>> g = torch.Generator().manual_seed(0)
    >>> frequency_noise(x, 0.5 * torch.pi, eps=0.1, generator=g).shape
    torch.Size([2, 3, 32, 32])
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..common.batches import is_single_batch, iter_batches, model_device
from ..common.modes import eval_mode
from ..common.fingerprint import fingerprint, hash_data
from ..common.results import Result, nan_for_none
from ..sweep import run_sweep

DEFAULT_FREQS = tuple(round(k * 0.1, 10) * math.pi for k in range(1, 10))  # 0.1π … 0.9π


def _centred_square(size: int, side: int, device=None) -> Tensor:
    side = max(0, min(size, side))
    start = size // 2 - side // 2  # fftshift puts DC at index size // 2
    lo, hi = max(0, start), min(size, start + side)
    line = torch.zeros(size, dtype=torch.bool, device=device)
    line[lo:hi] = True
    return line[:, None] & line[None, :]


def annulus_mask(size: int, freq: float, bandwidth: float = 0.2, device=None) -> Tensor:
    """(size, size) bool mask of the centred spectrum: the square annulus of frequencies f ± bandwidth.

    Example:
        >>> annulus_mask(8, math.pi / 2, 0.2).sum().item()  # 4x4 square minus the 2x2 around DC
        12
        >>> annulus_mask(32, math.pi / 2, 0.2).sum().item()  # 18x18 minus 12x12
        180
    """
    outer = 2 * math.floor((freq + bandwidth) * size / (2 * math.pi))
    inner = 2 * math.floor((freq - bandwidth) * size / (2 * math.pi))
    return _centred_square(size, outer, device) & ~_centred_square(size, inner, device)


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def frequency_noise(x: Tensor, freq: float, *, eps: float = 0.1, bandwidth: float = 0.2,
                    generator: torch.Generator | None = None) -> Tensor:
    """x + δ_f: sign noise of amplitude `eps`, band-passed to the square annulus `freq` ± `bandwidth`
    (radians, 0 … π) of the centred spectrum, real part (SPEC §3d).

    Args:
        x: (B, C, H, H) or (C, H, H) inputs in normalised space; square, any channel count.
        freq: centre frequency f in radians (≥ 0; f ≥ π − w keeps up to the corner frequencies).
        eps: noise amplitude ε ≥ 0 (per-pixel ±ε before filtering).
        bandwidth: half-width w of the annulus in radians (> 0).
        generator: torch.Generator for reproducible noise (on x's device or the CPU).

    Returns:
        Tensor of x's shape and dtype.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor (B, C, H, W), got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must hold square images (H == W), got H={x.shape[-2]}, W={x.shape[-1]}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point, got {x.dtype}")
    freq = _check_number("freq", freq)
    eps = _check_number("eps", eps)
    bandwidth = _check_number("bandwidth", bandwidth)
    if freq < 0:
        raise ValueError(f"freq must be >= 0 (radians), got {freq}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    size = x.shape[-1]
    gen_device = generator.device if generator is not None else x.device
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    delta = eps * torch.randn(x.shape, generator=generator, device=gen_device, dtype=work).sign()
    delta = delta.to(x.device)
    spectrum = torch.fft.fftshift(torch.fft.fft2(delta), dim=(-2, -1))
    spectrum = spectrum * annulus_mask(size, freq, bandwidth, x.device)
    filtered = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real
    return x + filtered.to(x.dtype)


@dataclass
class NoiseRobustnessResult(Result):
    """Clean accuracy and ΔAcc(f) = acc(x + δ_f) − acc(x) in percentage points, per frequency (radians)."""

    freqs: list[float]
    delta_accuracy: list[float]
    noisy_accuracy: list[float]
    clean_accuracy: float
    eps: float
    bandwidth: float
    num_samples: int

    def plot(self, **kwargs):
        from .plot import plot_noise_robustness

        return plot_noise_robustness(self, **kwargs)


def _batches_reiterable(data: Any) -> Any:
    if is_single_batch(data):
        return [data]
    if iter(data) is data:  # a one-shot iterator: every frequency needs the same batches
        return list(data)
    return data


def noise_robustness(model: nn.Module, data: Any, freqs: Sequence[float] = DEFAULT_FREQS, *,
                     eps: float = 0.1, bandwidth: float = 0.2, seed: int = 0,
                     out: str | None = None, resume: bool = True, progress: bool = True) -> NoiseRobustnessResult:
    """Accuracy change under frequency-based noise at each frequency in `freqs`, in percent.

    Runs as a `run_sweep` over [clean, f₁, f₂, …] (resumable with `out`, shardable under torchrun). The
    noise of batch i at any frequency comes from a generator seeded with `seed + i`, so results are
    reproducible and independent of sharding.

    Args:
        model: classifier returning logits (B, classes).
        data: (inputs, targets) batch or iterable of batches; targets are class indices.
        freqs: centre frequencies in radians (default 0.1π … 0.9π).
        eps, bandwidth: noise amplitude and annulus half-width (see `frequency_noise`).
        out, resume: directory for incremental results / reuse finished points. `out` records a
            fingerprint of the weights, the data (its bytes, hashed in one pass before the sweep) and
            the settings; a re-run with any of them changed is refused unless resume=False.

    Example:
        >>> res = noise_robustness(model, loader, eps=0.1, progress=False)  # doctest: +SKIP
        >>> res.delta_accuracy  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    freqs = [_check_number("freqs", f) for f in freqs]
    if not freqs:
        raise ValueError("freqs is empty")
    if any(f < 0 for f in freqs):
        raise ValueError(f"freqs must be >= 0 radians, got {freqs}")
    eps = _check_number("eps", eps)
    data = _batches_reiterable(data)
    device = model_device(model)

    def accuracy(freq: float | None) -> dict[str, float]:
        correct = total = 0
        with eval_mode(model), torch.no_grad():
            for i, (x, y) in enumerate(iter_batches(data, device=device)):
                if freq is not None:
                    gen = torch.Generator(device=x.device).manual_seed(seed + i)
                    x = frequency_noise(x, freq, eps=eps, bandwidth=bandwidth, generator=gen)
                pred = model(x).argmax(dim=-1)
                correct += int((pred == y.to(pred.device)).sum())
                total += int(y.shape[0])
        return {"accuracy": 100.0 * correct / total, "samples": total}

    points = [("clean", 0.0)] + [("freq", f) for f in freqs]
    meta = {"analysis": "noise_robustness", "model": type(model).__name__}
    print_ = None
    if out is not None:
        print_ = fingerprint("noise_robustness/2", model=model, data_hash=hash_data(data),
                             settings={"eps": eps, "bandwidth": bandwidth, "seed": seed})
    results = run_sweep(lambda pts: [accuracy(None if kind == "clean" else f) for kind, f in pts], points,
                        out=out, resume=resume, meta=meta, fingerprint=print_, desc="noise robustness",
                        progress=progress)
    clean = float(nan_for_none(results[0]["accuracy"]))
    noisy = [float(nan_for_none(r["accuracy"])) for r in results[1:]]
    return NoiseRobustnessResult(freqs=freqs, delta_accuracy=[a - clean for a in noisy], noisy_accuracy=noisy,
                                 clean_accuracy=clean, eps=eps, bandwidth=bandwidth,
                                 num_samples=int(results[0]["samples"]))

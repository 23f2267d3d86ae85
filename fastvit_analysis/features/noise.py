"""Robustness to frequency-based noise (docs/methods.md §3d, paper Fig. 2b).

δ = ε·sign(N(0, 1)) per pixel and channel; in the centred 2-D spectrum of δ keep only a square annulus
around DC (outer side 2⌊(f+w)·H/(2π)⌋, inner side 2⌊(f−w)·H/(2π)⌋, clipped to [0, H]); transform back
and take the real part: δ_f. The even-sized square is not symmetric about DC, so the real part also
carries the mask's conjugate mirror (the reference behaviour). ΔAcc(f) = acc(x + δ_f) − acc(x), in %.

Intervals (docs/methods.md §5): every image's correctness, clean and at each frequency, is kept; accuracies get
Wilson intervals over the N images, ΔAcc(f) Newcombe's interval for paired proportions (the same
images clean and noisy), and the mean ΔAcc over high frequencies a paired bootstrap over images.

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
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..common.batches import is_single_batch, iter_batches, model_device
from ..common.fingerprint import fingerprint, hash_data
from ..common.intervals import Estimate, bootstrap_interval, estimates_to_dict, paired_difference, wilson_interval
from ..common.modes import eval_mode
from ..common.outputs import OutputFn, check_output_fn, model_logits
from ..common.results import Result, nan_for_none
from ..sweep import run_sweep

DEFAULT_FREQS = tuple(round(k * 0.1, 10) * math.pi for k in range(1, 10))  # 0.1π … 0.9π
HIGH_FREQUENCY = 0.6 * math.pi  # docs/methods.md §5 C5: "high-frequency noise" is f >= 0.6π


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
    (radians, 0 … π) of the centred spectrum, real part (docs/methods.md §3d).

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
    """Clean accuracy and ΔAcc(f) = acc(x + δ_f) − acc(x) in percentage points, per frequency (radians).

    For the intervals: `clean_correct` and `noisy_correct[f]` hold each image's correctness as a
    string of "0"/"1" (image order of `data`); `clean_accuracy_ci95` and `noisy_accuracy_ci95` are
    Wilson intervals, `delta_accuracy_ci95` Newcombe's paired intervals (all in percent; NaN when
    the per-image record is missing, e.g. points resumed from an older run). `summary()` gives the
    key numbers as Estimates (n = images).
    """

    freqs: list[float]
    delta_accuracy: list[float]
    noisy_accuracy: list[float]
    clean_accuracy: float
    eps: float
    bandwidth: float
    num_samples: int
    clean_correct: str = ""
    noisy_correct: list[str] = field(default_factory=list)
    clean_accuracy_ci95: list[float] = field(default_factory=lambda: [math.nan, math.nan])
    noisy_accuracy_ci95: list[list[float]] = field(default_factory=list)
    delta_accuracy_ci95: list[list[float]] = field(default_factory=list)
    bootstrap_seed: int = 0

    @property
    def has_per_image(self) -> bool:
        return bool(self.clean_correct) and len(self.noisy_correct) == len(self.freqs) and all(self.noisy_correct)

    def correct(self) -> np.ndarray:
        """(1 + F, N) bool: row 0 clean, row 1 + j at `freqs[j]`; one column per image."""
        if not self.has_per_image:
            raise ValueError("this result has no per-image correctness (resumed from an older run?)")
        return np.array([[c == "1" for c in row] for row in [self.clean_correct, *self.noisy_correct]], dtype=bool)

    def per_image_delta(self, min_freq: float = HIGH_FREQUENCY) -> np.ndarray:
        """(N,) per-image mean over the frequencies f >= `min_freq` of (noisy − clean) correctness, in
        percent: the paired units for a contrast between two models on the same images, e.g.
        ``paired_difference(resnet.per_image_delta(), vit.per_image_delta(), method="bootstrap")``.
        Its mean is the mean ΔAcc over those frequencies."""
        rows = [j for j, f in enumerate(self.freqs) if f >= min_freq - 1e-12]
        if not rows:
            raise ValueError(f"min_freq: no frequency >= {min_freq:.4g} rad in {self.freqs}")
        c = self.correct().astype(np.float64)
        return 100.0 * (c[1 + np.array(rows)].mean(axis=0) - c[0])

    def summary(self) -> dict[str, Estimate]:
        """"clean_accuracy" (Wilson), "delta_accuracy/<f/π>pi" per frequency (Newcombe, paired) and
        "delta_accuracy/high" (mean ΔAcc over f >= 0.6π, paired bootstrap over images), in percent."""
        n = self.num_samples
        lo, hi = self.clean_accuracy_ci95
        out = {"clean_accuracy": Estimate(self.clean_accuracy, (lo, hi), n)}
        cis = self.delta_accuracy_ci95 or [[math.nan, math.nan]] * len(self.freqs)
        for f, d, (lo, hi) in zip(self.freqs, self.delta_accuracy, cis):
            out[f"delta_accuracy/{f / math.pi:.3g}pi"] = Estimate(d, (lo, hi), n)
        if any(f >= HIGH_FREQUENCY - 1e-12 for f in self.freqs):
            if self.has_per_image:
                out["delta_accuracy/high"] = bootstrap_interval(self.per_image_delta(), seed=self.bootstrap_seed,
                                                                num_resamples=2000)
            else:
                high = [d for f, d in zip(self.freqs, self.delta_accuracy) if f >= HIGH_FREQUENCY - 1e-12]
                out["delta_accuracy/high"] = Estimate(float(np.mean(high)), (math.nan, math.nan), n)
        return out

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"summary": estimates_to_dict(self.summary())}

    def plot(self, *, label: str | None = None, **kwargs):
        """ΔAcc against frequency with 95% error bars (`fastvit_analysis.plot.features.robustness`) -> Figure."""
        from ..plot.features import robustness

        return robustness({label: self} if label else self, **kwargs)


def _batches_reiterable(data: Any) -> Any:
    if is_single_batch(data):
        return [data]
    if iter(data) is data:  # a one-shot iterator: every frequency needs the same batches
        return list(data)
    return data


def noise_robustness(model: nn.Module, data: Any, freqs: Sequence[float] = DEFAULT_FREQS, *,
                     eps: float = 0.1, bandwidth: float = 0.2, seed: int = 0,
                     out: str | None = None, resume: bool = True, output_fn: OutputFn | None = None,
                     progress: bool = True) -> NoiseRobustnessResult:
    """Accuracy change under frequency-based noise at each frequency in `freqs`, in percent.

    Runs as a `run_sweep` over [clean, f₁, f₂, …] (resumable with `out`, shardable under torchrun). The
    noise of batch i at any frequency comes from a generator seeded with `seed + i`, so results are
    reproducible and independent of sharding.

    Args:
        model: classifier returning logits (B, classes), or a dict/tuple/ModelOutput holding them
            (see `output_fn`).
        data: (inputs, targets) batch or iterable of batches; targets are class indices.
        freqs: centre frequencies in radians (default 0.1π … 0.9π).
        eps, bandwidth: noise amplitude and annulus half-width (see `frequency_noise`).
        out, resume: directory for incremental results / reuse finished points. `out` records a
            fingerprint of the weights, the data (its bytes, hashed in one pass before the sweep) and
            the settings; a re-run with any of them changed is refused unless resume=False.
        output_fn: model output -> logits; default: the output if it is a tensor, else its `.logits`,
            `["logits"]` or first element (fastvit_analysis.common.outputs.model_logits).

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
        >>> batch = (torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,)))
        >>> res = noise_robustness(model, batch, freqs=[0.3 * math.pi, 0.9 * math.pi], eps=0.1, progress=False)
        >>> len(res.delta_accuracy), 0 <= res.clean_accuracy <= 100
        (2, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    freqs = [_check_number("freqs", f) for f in freqs]
    if not freqs:
        raise ValueError("freqs is empty")
    if any(f < 0 for f in freqs):
        raise ValueError(f"freqs must be >= 0 radians, got {freqs}")
    eps = _check_number("eps", eps)
    check_output_fn(output_fn)
    data = _batches_reiterable(data)
    device = model_device(model)

    def accuracy(freq: float | None) -> dict[str, Any]:
        correct = total = 0
        hits: list[Tensor] = []  # per image, for the paired intervals
        with eval_mode(model), torch.no_grad():
            for i, (x, y) in enumerate(iter_batches(data, device=device)):
                if freq is not None:
                    gen = torch.Generator(device=x.device).manual_seed(seed + i)
                    x = frequency_noise(x, freq, eps=eps, bandwidth=bandwidth, generator=gen)
                pred = model_logits(model(x), output_fn).argmax(dim=-1)
                correct += int((pred == y.to(pred.device)).sum())
                total += int(y.shape[0])
                hits.append((pred == y.to(pred.device)).cpu())
        bits = "".join("1" if h else "0" for h in torch.cat(hits).tolist())
        return {"accuracy": 100.0 * correct / total, "samples": total, "correct": bits}

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
    result = NoiseRobustnessResult(freqs=freqs, delta_accuracy=[a - clean for a in noisy], noisy_accuracy=noisy,
                                   clean_accuracy=clean, eps=eps, bandwidth=bandwidth,
                                   num_samples=int(results[0]["samples"]))
    return _with_intervals(result, [r.get("correct") or "" for r in results])


def _with_intervals(result: NoiseRobustnessResult, bits: Sequence[str]) -> NoiseRobustnessResult:
    """Fill the per-image record and the Wilson / paired intervals (percent) from per-point bit strings."""
    n = result.num_samples
    nan2 = [math.nan, math.nan]
    if not all(len(b) == n for b in bits):  # a point without the per-image record: values only
        result.noisy_accuracy_ci95 = [nan2] * len(result.freqs)
        result.delta_accuracy_ci95 = [nan2] * len(result.freqs)
        return result
    result.clean_correct, result.noisy_correct = bits[0], list(bits[1:])
    c = result.correct()
    result.clean_accuracy_ci95 = list(wilson_interval(int(c[0].sum()), n, scale=100).ci95)
    result.noisy_accuracy_ci95 = [list(wilson_interval(int(row.sum()), n, scale=100).ci95) for row in c[1:]]
    result.delta_accuracy_ci95 = [list(paired_difference(c[0], row, scale=100).ci95) for row in c[1:]]
    return result

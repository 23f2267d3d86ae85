"""Paper-style figures of the feature analyses: Fourier Δ log amplitude (Fig. 2a), its value at the
highest frequency against depth, feature-map variance (Fig. 9), CKA, robustness to frequency-based
noise (Fig. 2b) and shape-vs-texture bias.

Every function takes a result or a {label: result} dict (models compared in one figure), `ax=`, and
returns the Figure. Where a result carries 95% intervals (docs/methods.md §5) they are drawn as bands
(lines against depth or frequency) or error bars (ΔAcc, shape bias); NaN intervals (too few batches)
leave none. MSA and down-sampling blocks are shaded when one model is drawn (blocks differ between
models).

Example:
    >>> from fastvit_analysis.features.shape_bias import ShapeBiasResult
    >>> fig = shape_bias({"cnn": ShapeBiasResult(20, 60, 10, []), "vit": ShapeBiasResult(45, 35, 10, [])})
    >>> fig.savefig("/dev/null", format="png")
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from . import style

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["fourier", "high_frequency", "variance", "cka", "robustness", "shape_bias"]


def _cls(name: str):
    if name == "fourier":
        from ..features.fourier import FourierResult as c
    elif name == "variance":
        from ..features.variance import VarianceResult as c
    elif name == "cka":
        from ..features.cka import CKAResult as c
    elif name == "noise":
        from ..features.noise import NoiseRobustnessResult as c
    else:
        from ..features.shape_bias import ShapeBiasResult as c
    return c


def fourier(results: Any, *, ax=None, cmap: str = "plasma", bands: bool = True) -> "Figure":
    """Δ log amplitude against frequency, one line per latent coloured by normalised depth, with its
    95% band (bootstrap over batches) when `bands`; one panel per result. Several results get a last
    panel with each model's Δ at the highest frequency against depth (`high_frequency`). `ax`: one Axes
    per panel."""
    import matplotlib
    from matplotlib import cm, colors

    results = style.labelled(results, _cls("fourier"))
    n = len(results)
    panels = n + (1 if n > 1 else 0)
    fig, axes = style.axes_of(ax, panels, figsize=(4.2 * panels, 3.3))
    norm = colors.Normalize(0.0, 1.0)
    colormap = matplotlib.colormaps[cmap]
    for a, (label, r) in zip(axes, results.items()):
        cis = r.delta_ci95 or [None] * len(r.depths)
        for depth, freq, delta, ci in zip(r.depths, r.frequencies, r.delta_log_amplitude, cis):
            a.plot(freq, delta, color=colormap(norm(depth)), lw=1.2)
            if bands:
                style.band(a, freq, ci, colormap(norm(depth)), alpha=0.12)
        upper = max((f[-1] for f in r.frequencies if f), default=math.pi)
        style.pi_ticks(a, max(upper, math.pi))
        a.set_xlabel("Frequency")
        a.set_ylabel("Δ Log amplitude")
        if label:
            a.set_title(label, fontsize=9)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=colormap), ax=axes[n - 1], label="Normalized depth")
    if n > 1:
        high_frequency(results, ax=axes[n])
    return fig


def high_frequency(results: Any, *, ax=None) -> "Figure":
    """Δ log amplitude at each latent's highest frequency against normalised depth with its 95% band,
    MSA blocks shaded for one model."""
    results = style.labelled(results, _cls("fourier"))
    fig, (ax,) = style.axes_of(ax, 1, figsize=(4.2, 3.3))
    if len(results) == 1:
        r = next(iter(results.values()))
        style.shade_kinds(ax, r.depths, r.kinds, legend=False)
    for i, (label, r) in enumerate(results.items()):
        c = "tab:red" if len(results) == 1 else style.color(i)
        ax.plot(r.depths, r.high_frequency, marker="o", ms=3, color=c, label=label or None)
        style.band(ax, r.depths, r.high_frequency_ci95.tolist(), c)
    ax.set_xlabel("Normalized depth")
    ax.set_ylabel("Δ Log amplitude (high freq.)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small", frameon=False)
    return fig


def variance(results: Any, *, ax=None, log: bool = False) -> "Figure":
    """Feature-map variance against normalised depth with its 95% band (bootstrap over batches); MSA and
    down-sampling blocks shaded for one model, MSA latents marked by squares when comparing."""
    results = style.labelled(results, _cls("variance"))
    fig, (ax,) = style.axes_of(ax, 1, figsize=(4.6, 3.3))
    single = len(results) == 1
    if single:
        r = next(iter(results.values()))
        style.shade_kinds(ax, r.depths, r.kinds, legend=False)
    for i, (label, r) in enumerate(results.items()):
        c = "tab:blue" if single else style.color(i)
        ax.plot(r.depths, r.variance, marker="o", ms=3, color=c, label=label or None)
        style.band(ax, r.depths, r.variance_ci95, c)
        msa = [(d, v) for d, v, k in zip(r.depths, r.variance, r.kinds) if k == "msa"]
        if msa and not single:
            ax.plot(*zip(*msa), "s", ms=5, mfc="none", color=c)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("Normalized depth")
    ax.set_ylabel("Feature map variance")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small", frameon=False)
    return fig


def cka(results: Any, *, ax=None, cmap: str = "magma", labels: bool = False) -> "Figure":
    """Heat map of each CKA matrix (rows: model A latents, columns: model B latents), one panel per
    result and one colour bar; `labels` puts the latent names on the axes."""
    results = style.labelled(results, _cls("cka"))
    fig, axes = style.axes_of(ax, len(results), figsize=(4.2 * len(results), 3.6))
    image = None
    for a, (label, r) in zip(axes, results.items()):
        image = a.imshow(np.asarray(r.matrix, dtype=float), origin="lower", cmap=cmap, vmin=0.0, vmax=1.0,
                         aspect="auto")
        a.set_ylabel("Layers (A)")
        a.set_xlabel("Layers (B)")
        if label:
            a.set_title(label, fontsize=9)
        if labels:
            a.set_yticks(range(len(r.names_a)), r.names_a, fontsize="xx-small")
            a.set_xticks(range(len(r.names_b)), r.names_b, fontsize="xx-small", rotation=90)
    fig.colorbar(image, ax=axes, label="CKA")
    return fig


def robustness(results: Any, *, ax=None) -> "Figure":
    """ΔAcc (%) against noise frequency (radians), with 95% error bars (Newcombe, paired over the
    images) where the per-image record exists."""
    results = style.labelled(results, _cls("noise"))
    fig, (ax,) = style.axes_of(ax, 1, figsize=(4.6, 3.3))
    ax.axhline(0.0, color="black", lw=0.6)
    for i, (label, r) in enumerate(results.items()):
        style.errorbar(ax, r.freqs, np.asarray(r.delta_accuracy, dtype=float), r.delta_accuracy_ci95, marker="o",
                       ms=3, color=style.color(i), label=label or None)
    style.pi_ticks(ax, math.pi)
    ax.set_xlabel("Frequency")
    ax.set_ylabel("Δ Accuracy (%)")
    if any(results):
        ax.legend(frameon=False)
    return fig


def shape_bias(results: Any, *, ax=None) -> "Figure":
    """Shape bias (fraction of cue-following decisions that follow the shape) per model, with its Wilson
    95% error bar; the dashed line at 0.5 is no preference."""
    results = style.labelled(results, _cls("shape_bias"))
    fig, (ax,) = style.axes_of(ax, 1, figsize=(max(3.0, 1.0 + 0.9 * len(results)), 3.2))
    est = [r.summary().get("shape bias") for r in results.values()]
    x = np.arange(len(est))
    values = [math.nan if e is None else e.value for e in est]
    cis = [(math.nan, math.nan) if e is None else e.ci95 for e in est]
    ax.bar(x, values, yerr=style.interval_errors(values, cis), capsize=4,
           color=[style.color(i) for i in range(len(est))])
    ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_xticks(x, [label or "model" for label in results], rotation=20, fontsize=8)
    ax.set_ylabel("shape bias (95% CI)")
    return fig

"""Paper-style figures of the feature analyses; every function returns a matplotlib Figure.

Uses matplotlib's object API only (no pyplot state), so it works with the Agg backend and in scripts.
Where a result carries 95% intervals (docs/methods.md §5) they are drawn as bands (lines against depth or
frequency) or error bars (ΔAcc); intervals that are NaN (too few batches) leave no band.

Example:
    >>> import io, timm, torch
    >>> from fastvit_analysis import variance_analysis
    >>> net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1])
    >>> fig = plot_variance(variance_analysis(net, (torch.randn(4, 3, 32, 32), torch.zeros(4)), progress=False))
    >>> fig.savefig(io.BytesIO(), format="png")
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .cka import CKAResult
    from .fourier import FourierResult
    from .noise import NoiseRobustnessResult
    from .variance import VarianceResult

SHADES = {"msa": ("tab:gray", 0.25, "MSA"), "downsample": ("tab:blue", 0.12, "down-sampling")}


def _figure(ax: "Axes | None", figsize=(4.0, 3.2)) -> tuple["Figure", "Axes"]:
    from matplotlib.figure import Figure

    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _shade_kinds(ax: "Axes", depths: Sequence[float], kinds: Sequence[str]) -> None:
    """Shade the depth interval of every MSA / down-sampling latent (half a step either side)."""
    step = (depths[1] - depths[0]) if len(depths) > 1 else 1.0
    labelled: set[str] = set()
    for depth, kind in zip(depths, kinds):
        if kind in SHADES:
            color, alpha, label = SHADES[kind]
            ax.axvspan(depth - step / 2, depth + step / 2, color=color, alpha=alpha, lw=0,
                       label=None if kind in labelled else label)
            labelled.add(kind)
    if labelled:
        ax.legend(loc="best", fontsize="small", frameon=False)


def _pi_ticks(ax: "Axes", upper: float) -> None:
    ticks = [0.0, 0.5 * math.pi, math.pi]
    ax.set_xticks([t for t in ticks if t <= upper + 1e-9] or [0.0])
    ax.set_xticklabels(["0", "0.5π", "1.0π"][:len(ax.get_xticks())])


def _band(ax: "Axes", x: Sequence[float], ci: Sequence[Sequence[float]] | None, color, alpha: float = 0.2) -> None:
    """Shade the 95% interval `ci` (len(x) pairs [lo, hi]) around a line; nothing when absent/NaN."""
    import numpy as np

    if not ci:
        return
    c = np.asarray(ci, dtype=float)
    if c.shape != (len(x), 2) or np.isnan(c).all():
        return
    ax.fill_between(x, c[:, 0], c[:, 1], color=color, alpha=alpha, lw=0)


def plot_fourier(result: "FourierResult", *, ax: "Axes | None" = None, cmap: str = "plasma",
                 bands: bool = True) -> "Figure":
    """Δ log amplitude against frequency, one line per latent coloured by normalised depth, with its
    95% band (bootstrap over batches) when `bands`."""
    import matplotlib
    from matplotlib import cm, colors

    fig, ax = _figure(ax)
    norm = colors.Normalize(0.0, 1.0)
    colormap = matplotlib.colormaps[cmap]
    cis = result.delta_ci95 or [None] * len(result.depths)
    for depth, freq, delta, ci in zip(result.depths, result.frequencies, result.delta_log_amplitude, cis):
        ax.plot(freq, delta, color=colormap(norm(depth)), lw=1.2)
        if bands:
            _band(ax, freq, ci, colormap(norm(depth)), alpha=0.12)
    upper = max((f[-1] for f in result.frequencies if f), default=math.pi)
    _pi_ticks(ax, max(upper, math.pi))
    ax.set_xlabel("Frequency")
    ax.set_ylabel("Δ Log amplitude")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=colormap), ax=ax, label="Normalized depth")
    return fig


def plot_high_frequency(result: "FourierResult", *, ax: "Axes | None" = None) -> "Figure":
    """Δ log amplitude at each latent's highest frequency against normalised depth, MSA shaded, with
    its 95% band."""
    fig, ax = _figure(ax)
    _shade_kinds(ax, result.depths, result.kinds)
    ax.plot(result.depths, result.high_frequency, marker="o", ms=3, color="tab:red")
    _band(ax, result.depths, result.high_frequency_ci95.tolist(), "tab:red")
    ax.set_xlabel("Normalized depth")
    ax.set_ylabel("Δ Log amplitude (high freq.)")
    return fig


def plot_variance(result: "VarianceResult", *, ax: "Axes | None" = None, log: bool = False) -> "Figure":
    """Feature-map variance against normalised depth, MSA and down-sampling blocks shaded, with its
    95% band (bootstrap over batches)."""
    fig, ax = _figure(ax)
    _shade_kinds(ax, result.depths, result.kinds)
    ax.plot(result.depths, result.variance, marker="o", ms=3, color="tab:blue")
    _band(ax, result.depths, result.variance_ci95, "tab:blue")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("Normalized depth")
    ax.set_ylabel("Feature map variance")
    return fig


def plot_cka(result: "CKAResult", *, ax: "Axes | None" = None, cmap: str = "magma",
             labels: bool = False) -> "Figure":
    """Heat map of the CKA matrix (rows: model A latents, columns: model B latents)."""
    import numpy as np

    fig, ax = _figure(ax, figsize=(4.2, 3.6))
    matrix = np.asarray(result.matrix, dtype=float)
    image = ax.imshow(matrix, origin="lower", cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, label="CKA")
    ax.set_ylabel("Layers (A)")
    ax.set_xlabel("Layers (B)")
    if labels:
        ax.set_yticks(range(len(result.names_a)), result.names_a, fontsize="xx-small")
        ax.set_xticks(range(len(result.names_b)), result.names_b, fontsize="xx-small", rotation=90)
    return fig


def plot_noise_robustness(result: "NoiseRobustnessResult", *, ax: "Axes | None" = None,
                          label: str | None = None) -> "Figure":
    """ΔAcc (%) against noise frequency (radians), with 95% error bars (paired over the images)."""
    import numpy as np

    fig, ax = _figure(ax)
    ax.axhline(0.0, color="black", lw=0.6)
    delta = np.asarray(result.delta_accuracy, dtype=float)
    ci = np.asarray(result.delta_accuracy_ci95, dtype=float) if result.delta_accuracy_ci95 else None
    if ci is not None and ci.shape == (len(delta), 2) and not np.isnan(ci).all():
        yerr = np.stack([delta - ci[:, 0], ci[:, 1] - delta])
        ax.errorbar(result.freqs, delta, yerr=yerr, marker="o", ms=3, capsize=2, label=label)
    else:
        ax.plot(result.freqs, delta, marker="o", ms=3, label=label)
    _pi_ticks(ax, math.pi)
    ax.set_xlabel("Frequency")
    ax.set_ylabel("Δ Accuracy (%)")
    if label:
        ax.legend(frameon=False)
    return fig

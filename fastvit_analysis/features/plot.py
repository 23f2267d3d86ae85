"""Paper-style figures of the feature analyses; every function returns a matplotlib Figure.

Uses matplotlib's object API only (no pyplot state), so it works with the Agg backend and in scripts.

Example:
    >>> fig = plot_variance(variance_analysis(model, loader))  # doctest: +SKIP
    >>> fig.savefig("variance.png")  # doctest: +SKIP
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


def plot_fourier(result: "FourierResult", *, ax: "Axes | None" = None, cmap: str = "plasma") -> "Figure":
    """Δ log amplitude against frequency, one line per latent coloured by normalised depth."""
    import matplotlib
    from matplotlib import cm, colors

    fig, ax = _figure(ax)
    norm = colors.Normalize(0.0, 1.0)
    colormap = matplotlib.colormaps[cmap]
    for depth, freq, delta in zip(result.depths, result.frequencies, result.delta_log_amplitude):
        ax.plot(freq, delta, color=colormap(norm(depth)), lw=1.2)
    upper = max((f[-1] for f in result.frequencies if f), default=math.pi)
    _pi_ticks(ax, max(upper, math.pi))
    ax.set_xlabel("Frequency")
    ax.set_ylabel("Δ Log amplitude")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=colormap), ax=ax, label="Normalized depth")
    return fig


def plot_high_frequency(result: "FourierResult", *, ax: "Axes | None" = None) -> "Figure":
    """Δ log amplitude at each latent's highest frequency against normalised depth, MSA shaded."""
    fig, ax = _figure(ax)
    _shade_kinds(ax, result.depths, result.kinds)
    ax.plot(result.depths, result.high_frequency, marker="o", ms=3, color="tab:red")
    ax.set_xlabel("Normalized depth")
    ax.set_ylabel("Δ Log amplitude (high freq.)")
    return fig


def plot_variance(result: "VarianceResult", *, ax: "Axes | None" = None, log: bool = False) -> "Figure":
    """Feature-map variance against normalised depth, MSA and down-sampling blocks shaded."""
    fig, ax = _figure(ax)
    _shade_kinds(ax, result.depths, result.kinds)
    ax.plot(result.depths, result.variance, marker="o", ms=3, color="tab:blue")
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
    """ΔAcc (%) against noise frequency (radians)."""
    fig, ax = _figure(ax)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.plot(result.freqs, result.delta_accuracy, marker="o", ms=3, label=label)
    _pi_ticks(ax, math.pi)
    ax.set_xlabel("Frequency")
    ax.set_ylabel("Δ Accuracy (%)")
    if label:
        ax.legend(frameon=False)
    return fig

"""Plots of curvature results (matplotlib, safe under the Agg backend; nothing is shown)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def plot_max_eigenvalue_spectrum(result: Any, axes=None, *, bins: int = 40, label: str | None = None,
                                 color: str | None = None):
    """The paper's Fig. 1c/4: density of the pooled per-mini-batch eigenvalues, negative range (left
    panel) and positive range (right panel), each a normalised histogram over its own range.

    Returns (figure, (ax_negative, ax_positive)); pass `axes` (two Axes) to overlay several models.
    """
    plt = _pyplot()
    values = torch.as_tensor(result.eigenvalues).reshape(-1).double().numpy()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=False)
    else:
        fig = axes[0].figure
    total = max(values.size, 1)
    for ax, part, title in ((axes[0], values[values < 0], "negative"), (axes[1], values[values > 0], "positive")):
        if part.size:
            hist, edges = np.histogram(part, bins=bins)
            density = hist / (total * np.diff(edges))  # share of all values, so the panels are comparable
            ax.plot(0.5 * (edges[1:] + edges[:-1]), density, label=label, color=color)
        ax.set_title(f"{title} eigenvalues")
        ax.set_xlabel("max eigenvalue")
    axes[0].set_ylabel("density")
    if label is not None:
        axes[1].legend()
    fig.tight_layout()
    return fig, tuple(axes)


def plot_density(result: Any, ax=None, *, grid: Any = None, sigma: float | None = None, num: int = 1000,
                 log: bool = True, label: str | None = None):
    """Smoothed SLQ eigenvalue density of a HessianDensity result; returns (figure, ax)."""
    plt = _pyplot()
    nodes = result.nodes.double()
    if grid is None:
        lo, hi = float(nodes.min()), float(nodes.max())
        pad = 0.05 * (hi - lo + 1e-12)
        grid = torch.linspace(lo - pad, hi + pad, num, dtype=torch.float64)
    dens = result.density(torch.as_tensor(grid), sigma)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3))
    else:
        fig = ax.figure
    ax.plot(np.asarray(grid), dens.numpy() + (1e-12 if log else 0.0), label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    fig.tight_layout()
    return fig, ax

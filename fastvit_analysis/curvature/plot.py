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


def plot_block_spectra(result: Any, ax=None):
    """Per-block top-k eigenvalues (markers, left axis) and trace with its 95% interval (bars, right
    axis) against the block index. Returns the figure."""
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.4 * len(result.blocks) + 2), 3))
    else:
        fig = ax.figure
    x = np.arange(len(result.blocks))
    values = torch.as_tensor(result.eigenvalues).double().numpy()
    for c in range(values.shape[1]):
        ax.plot(x, values[:, c], "o", ms=4, color="C0", alpha=1.0 if c == 0 else 0.5,
                label="top eigenvalues" if c == 0 else None)
    ax.set_ylabel("eigenvalue")
    ax.set_xticks(x)
    ax.set_xticklabels(result.blocks, rotation=60, ha="right", fontsize=7)
    trace = torch.as_tensor(result.trace).double().numpy()
    if np.isfinite(trace).any():
        twin = ax.twinx()
        err = 1.96 * torch.as_tensor(result.trace_stderr).double().numpy()
        twin.errorbar(x, trace, yerr=err, fmt="s", ms=3, color="C1", capsize=2, label="trace (95% CI)")
        twin.set_ylabel("trace", color="C1")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return fig

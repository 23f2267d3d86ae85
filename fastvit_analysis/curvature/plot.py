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


def histogram_band(eigenvalues: Any, edges: np.ndarray, *, seed: int = 0, num_resamples: int = 1000):
    """Pointwise 95% band of the max-eigenvalue histogram density on `edges` [bins + 1]: each bin's
    count over the total number of values, per bin width, bootstrapped over MINI-BATCHES (rows of
    `eigenvalues` [num_batches, k]) -> ArrayEstimate of shape [bins]."""
    from ..common.intervals import bootstrap_interval

    rows = torch.as_tensor(eigenvalues).double().numpy()
    per_batch = np.stack([np.histogram(r[np.isfinite(r)], bins=edges)[0] for r in rows]).astype(np.float64)
    totals = np.isfinite(rows).sum(1, keepdims=True).astype(np.float64)
    width = np.diff(edges)
    b = len(width)
    return bootstrap_interval(np.concatenate([per_batch, totals], axis=1),
                              lambda t: t[:, :b] / (t[:, b:] * width[None]), pooled=True, seed=seed,
                              num_resamples=num_resamples)


def plot_max_eigenvalue_spectrum(result: Any, axes=None, *, bins: int = 40, label: str | None = None,
                                 color: str | None = None, band: bool = True):
    """The paper's Fig. 1c/4: density of the pooled per-mini-batch eigenvalues, negative range (left
    panel) and positive range (right panel), each a normalised histogram over its own range.

    band: shade each bin's 95% interval (bootstrap over mini-batches, `histogram_band`); the panel
    titles carry the negative fraction and positive mean with their intervals (`result.summary()`).
    Returns (figure, (ax_negative, ax_positive)); pass `axes` (two Axes) to overlay several models.
    """
    plt = _pyplot()
    values = torch.as_tensor(result.eigenvalues).reshape(-1).double().numpy()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=False)
    else:
        fig = axes[0].figure
    total = max(values.size, 1)
    summary = result.summary(quantiles=()) if hasattr(result, "summary") else {}
    notes = {"negative": summary.get("negative_fraction"), "positive": summary.get("positive_mean")}
    for ax, part, title in ((axes[0], values[values < 0], "negative"), (axes[1], values[values > 0], "positive")):
        if part.size:
            hist, edges = np.histogram(part, bins=bins)
            density = hist / (total * np.diff(edges))  # share of all values, so the panels are comparable
            centres = 0.5 * (edges[1:] + edges[:-1])
            line, = ax.plot(centres, density, label=label, color=color)
            if band and np.ndim(result.eigenvalues) == 2 and len(result.eigenvalues) > 1:
                interval = histogram_band(result.eigenvalues, edges)
                ax.fill_between(centres, interval.ci95[:, 0], interval.ci95[:, 1], color=line.get_color(),
                                alpha=0.2, lw=0)
        note = notes[title]
        if note is not None and label is None:
            what = "fraction" if title == "negative" else "mean"
            ax.set_title(f"{title} eigenvalues ({what} {note:.3g})", fontsize="small")
        else:
            ax.set_title(f"{title} eigenvalues")
        ax.set_xlabel("max eigenvalue")
    axes[0].set_ylabel("density")
    if label is not None:
        axes[1].legend()
    fig.tight_layout()
    return fig, tuple(axes)


def plot_density(result: Any, ax=None, *, grid: Any = None, sigma: float | None = None, num: int = 1000,
                 log: bool = True, label: str | None = None, band: bool = True):
    """Smoothed SLQ eigenvalue density of a HessianDensityResult result; returns (figure, ax).

    band: shade the pointwise 95% band over probes (`HessianDensityResult.density_band`)."""
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
    floor = 1e-12 if log else 0.0
    line, = ax.plot(np.asarray(grid), dens.numpy() + floor, label=label)
    if band and result.nodes.shape[0] > 1:
        interval = result.density_band(torch.as_tensor(grid), sigma)
        ax.fill_between(np.asarray(grid), interval.ci95[:, 0] + floor, interval.ci95[:, 1] + floor,
                        color=line.get_color(), alpha=0.2, lw=0)
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

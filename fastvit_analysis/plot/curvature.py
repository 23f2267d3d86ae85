"""Figures of the curvature results: top eigenvalues, SLQ density, trace, the paper's max-eigenvalue
spectrum (Fig. 1c/4) with its summary, and per-block spectra.

Every function takes one result or a {label: result} dict (models compared in one figure), `ax=` to
draw into existing Axes, and returns the Figure. Intervals (docs/methods.md §5) are drawn where the
result carries them: residual bounds on eigenvalues, the probe bootstrap band of the density, normal
intervals of traces, the mini-batch bootstrap band of the max-eigenvalue histogram and error bars on its
negative fraction and positive mean.

Example:
    >>> import torch
    >>> from fastvit_analysis.curvature.max_eigen import MaxEigenvalueSpectrumResult
    >>> v = torch.tensor([[2.0, -1.0], [3.0, 1.0], [2.5, -0.5]], dtype=torch.float64)
    >>> r = MaxEigenvalueSpectrumResult(v, torch.zeros_like(v), torch.ones_like(v, dtype=torch.bool),
    ...                           1 / 3, 2.125, 16, "LM", 30)
    >>> fig = max_eigen({"a": r, "b": r}, bins=4); fig.savefig("/dev/null", format="png")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from . import style

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["spectrum", "density", "trace", "max_eigen", "max_eigen_summary", "blocks", "histogram_band"]


def _classes(name: str):
    from ..curvature import blocks as b
    from ..curvature import density as d
    from ..curvature import max_eigen as m
    from ..curvature import spectrum as s
    from ..curvature import trace as t

    return {"spectrum": s.HessianSpectrumResult, "density": d.HessianDensityResult, "trace": t.HessianTraceResult,
            "max_eigen": m.MaxEigenvalueSpectrumResult, "blocks": b.BlockSpectraResult}[name]


def _legend(ax, results: Mapping[str, Any]) -> None:
    if any(results) and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def spectrum(results: Any, *, ax=None) -> "Figure":
    """Top eigenvalues against their index, each with its certified residual interval [λ − r, λ + r]
    (`HessianSpectrumResult.summary()`) as error bars."""
    results = style.labelled(results, _classes("spectrum"))
    fig, (ax,) = style.axes_of(ax, 1, figsize=(5, 3.2))
    for i, (label, r) in enumerate(results.items()):
        est = r.summary()
        values = [e.value for e in est.values()]
        style.errorbar(ax, range(1, len(values) + 1), values, [e.ci95 for e in est.values()], marker="o",
                       color=style.color(i), label=label or None)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue")
    ax.set_title("Top Hessian eigenvalues", fontsize=10)
    _legend(ax, results)
    return fig


def density(results: Any, *, ax=None, grid: Any = None, sigma: float | None = None, num: int = 1000,
            log: bool = True, band: bool = True) -> "Figure":
    """Smoothed SLQ eigenvalue density of each HessianDensityResult; with `band`, its pointwise 95% band over
    probes (`HessianDensityResult.density_band`, none for one probe). Without `grid`, each result on `num`
    points over its own node range (5% padding)."""
    results = style.labelled(results, _classes("density"))
    fig, (ax,) = style.axes_of(ax, 1, figsize=(5.5, 3.2))
    floor = 1e-12 if log else 0.0
    for i, (label, r) in enumerate(results.items()):
        g = grid
        if g is None:
            nodes = r.nodes.double()
            lo, hi = float(nodes.min()), float(nodes.max())
            pad = 0.05 * (hi - lo + 1e-12)
            g = torch.linspace(lo - pad, hi + pad, num, dtype=torch.float64)
        g = torch.as_tensor(g, dtype=torch.float64)
        line, = ax.plot(g.numpy(), r.density(g, sigma).numpy() + floor, color=style.color(i), label=label or None)
        if band and r.nodes.shape[0] > 1:
            interval = r.density_band(g, sigma)
            ax.fill_between(g.numpy(), interval.ci95[:, 0] + floor, interval.ci95[:, 1] + floor,
                            color=line.get_color(), alpha=0.2, lw=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title("Hessian spectral density (SLQ)", fontsize=10)
    _legend(ax, results)
    return fig


def trace(results: Any, *, ax=None) -> "Figure":
    """One bar per result with the 95% interval of the trace (`HessianTraceResult.summary()`) as error bars."""
    results = style.labelled(results, _classes("trace"))
    fig, (ax,) = style.axes_of(ax, 1, figsize=(max(3.0, 1.0 + 0.9 * len(results)), 3))
    est = [r.summary()["trace"] for r in results.values()]
    x = np.arange(len(est))
    values = [e.value for e in est]
    ax.bar(x, values, yerr=style.interval_errors(values, [e.ci95 for e in est]), capsize=4,
           color=[style.color(i) for i in range(len(est))])
    ax.set_xticks(x, [label or "trace" for label in results], rotation=20, fontsize=8)
    ax.set_ylabel("Hessian trace (95% CI)")
    return fig


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


def max_eigen(results: Any, *, ax=None, bins: int = 40, band: bool = True, summary: bool = True) -> "Figure":
    """The paper's Fig. 1c/4: density of the pooled per-mini-batch top eigenvalues, negative range
    (first panel) and positive range (second), each value's share of all values per bin width.

    band: shade each bin's 95% interval (bootstrap over mini-batches, `histogram_band`). A single
    unlabelled result gets its negative fraction and positive mean with intervals in the panel titles.
    summary: two more panels with those two numbers per result and their 95% error bars
    (`max_eigen_summary`). `ax`: two Axes (summary=False) or four.
    """
    results = style.labelled(results, _classes("max_eigen"))
    panels = 4 if summary else 2
    fig, axes = style.axes_of(ax, panels, figsize=(11 if summary else 8, 3.2),
                              width_ratios=[2, 2, 1, 1] if summary else None)
    neg_ax, pos_ax = axes[0], axes[1]
    for i, (label, r) in enumerate(results.items()):
        values = torch.as_tensor(r.eigenvalues).reshape(-1).double().numpy()
        total = max(values.size, 1)
        for a, part in ((neg_ax, values[values < 0]), (pos_ax, values[values > 0])):
            if not part.size:
                continue
            hist, edges = np.histogram(part, bins=bins)
            centres = 0.5 * (edges[1:] + edges[:-1])
            line, = a.plot(centres, hist / (total * np.diff(edges)), color=style.color(i),
                           label=label or None)
            if band and np.ndim(r.eigenvalues) == 2 and len(r.eigenvalues) > 1:
                interval = histogram_band(r.eigenvalues, edges)
                a.fill_between(centres, interval.ci95[:, 0], interval.ci95[:, 1], color=line.get_color(),
                               alpha=0.2, lw=0)
    only = next(iter(results.values())) if list(results) == [""] else None
    notes = only.summary(quantiles=()) if only is not None else {}
    for a, title, key, what in ((neg_ax, "negative", "negative_fraction", "fraction"),
                                (pos_ax, "positive", "positive_mean", "mean")):
        note = notes.get(key)
        a.set_title(f"{title} eigenvalues ({what} {note:.3g})" if note is not None else f"{title} eigenvalues",
                    fontsize="small")
        a.set_xlabel("max eigenvalue")
    neg_ax.set_ylabel("density")
    _legend(pos_ax if pos_ax.get_legend_handles_labels()[0] else neg_ax, results)
    if summary:
        max_eigen_summary(results, ax=axes[2:])
    return fig


def max_eigen_summary(results: Any, *, ax=None) -> "Figure":
    """Negative fraction and positive mean of each max-eigenvalue spectrum (`summary()`), one point per
    result with its 95% error bar (bootstrap over mini-batches). `ax`: two Axes."""
    results = style.labelled(results, _classes("max_eigen"))
    fig, axes = style.axes_of(ax, 2, figsize=(5, 3.2))
    est = [r.summary(quantiles=()) for r in results.values()]
    x = np.arange(len(est))
    for a, key, title in ((axes[0], "negative_fraction", "negative fraction"),
                          (axes[1], "positive_mean", "positive mean")):
        for i, e in enumerate(est):
            style.errorbar(a, [x[i]], [e[key].value], [e[key].ci95], marker="o", color=style.color(i),
                           capsize=4, ls="none")
        a.set_xticks(x, [label or "" for label in results], rotation=20, fontsize=8)
        a.set_xlim(-0.6, len(est) - 0.4)
        a.set_title(f"{title} (95% CI)", fontsize="small")
    return fig


def blocks(results: Any, *, ax=None) -> "Figure":
    """Per-block top-k eigenvalues (markers, left axis) and trace with its 95% interval (error bars,
    right axis) against the block; one panel per result."""
    results = style.labelled(results, _classes("blocks"))
    widest = max(len(r.blocks) for r in results.values())
    fig, axes = style.axes_of(ax, len(results), figsize=(len(results) * max(4.0, 0.4 * widest + 2), 3))
    for a, (label, r) in zip(axes, results.items()):
        x = np.arange(len(r.blocks))
        values = torch.as_tensor(r.eigenvalues).double().numpy()
        for c in range(values.shape[1]):
            a.plot(x, values[:, c], "o", ms=4, color="C0", alpha=1.0 if c == 0 else 0.5,
                   label="top eigenvalues" if c == 0 else None)
        a.set_ylabel("eigenvalue")
        a.set_xticks(x, r.blocks, rotation=60, ha="right", fontsize=7)
        if label:
            a.set_title(label, fontsize=9)
        est = r.trace_estimates()
        trace_values = [e.value for e in est]
        if np.isfinite(trace_values).any():
            twin = a.twinx()
            style.errorbar(twin, x, trace_values, [e.ci95 for e in est], fmt="s", ms=3, color="C1",
                           label="trace (95% CI)")
            twin.set_ylabel("trace", color="C1")
        a.legend(loc="upper left", fontsize=7)
    return fig

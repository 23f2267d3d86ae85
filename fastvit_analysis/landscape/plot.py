"""Plots of landscapes and trajectories: contour, 3-D surface, 1-D curves, trajectory overlay.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, works under the Agg backend and
without a display); pass ``ax=`` to draw into an existing axes. The paper plots ``loss − min(loss)``
clipped at 42 (``clip=42.0``, ``relative=True``); both are arguments.

Example:
    >>> import numpy as np
    >>> from fastvit_analysis.landscape.grid import LandscapeResult
    >>> a = np.linspace(-1, 1, 5); z = np.add.outer(a ** 2, a ** 2)
    >>> r = LandscapeResult([a, a], z, z, np.full_like(z, np.nan), np.zeros_like(z))
    >>> fig = plot_contour(r); fig.savefig("/dev/null", format="png")
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .grid import LandscapeResult
from .trajectory import TrajectoryResult

__all__ = ["plot_contour", "plot_surface", "plot_curve", "plot_trajectory", "plot_border_rise",
           "landscape_values"]

_KEYS = ("loss", "nll", "accuracy", "l2_norm")


def landscape_values(result: LandscapeResult, *, key: str = "loss", relative: bool = True,
                     clip: float | None = 42.0) -> np.ndarray:
    """The plotted values: ``result.<key>``, minus its minimum if `relative`, clipped above at `clip`."""
    if not isinstance(result, LandscapeResult):
        raise TypeError(f"result: expected a LandscapeResult, got {type(result).__name__}")
    if key not in _KEYS:
        raise ValueError(f"key: expected one of {_KEYS}, got {key!r}")
    z = np.asarray(getattr(result, key), dtype=np.float64)
    if relative:
        z = z - np.nanmin(z)
    if clip is not None:
        z = np.minimum(z, clip)
    return z


def _axes(ax: Axes | None, projection: str | None = None) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=(5, 4))
    return fig, fig.add_subplot(1, 1, 1, projection=projection)


def _require_2d(result: LandscapeResult) -> None:
    if not isinstance(result, LandscapeResult) or result.dims != 2:
        raise ValueError("result: expected a 2-D LandscapeResult (dims=2)")


def plot_contour(result: LandscapeResult, *, key: str = "loss", relative: bool = True,
                 clip: float | None = 42.0, levels: int | Sequence[float] = 20, filled: bool = False,
                 ax: Axes | None = None, title: str | None = None) -> Figure:
    """Contour plot of a 2-D landscape (x: first direction, y: second)."""
    _require_2d(result)
    z = landscape_values(result, key=key, relative=relative, clip=clip)
    fig, ax = _axes(ax)
    x, y = result.coordinates
    draw = ax.contourf if filled else ax.contour
    cs = draw(x, y, z.T, levels=levels, cmap="viridis")
    if not filled:
        ax.clabel(cs, inline=True, fontsize=7)
    else:
        fig.colorbar(cs, ax=ax)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_title(title if title is not None else key)
    return fig


def plot_surface(result: LandscapeResult, *, key: str = "loss", relative: bool = True,
                 clip: float | None = 42.0, ax: Axes | None = None, title: str | None = None,
                 cmap: str = "viridis") -> Figure:
    """3-D surface of a 2-D landscape (the paper's figure: loss − min, clipped at 42)."""
    _require_2d(result)
    z = landscape_values(result, key=key, relative=relative, clip=clip)
    fig, ax = _axes(ax, projection="3d")
    xx, yy = np.meshgrid(result.coordinates[0], result.coordinates[1], indexing="ij")
    ax.plot_surface(xx, yy, z, cmap=cmap, linewidth=0, antialiased=True)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_zlabel(key)
    ax.set_title(title if title is not None else key)
    return fig


def plot_curve(results: LandscapeResult | Sequence[LandscapeResult] | Mapping[str, LandscapeResult], *,
               key: str = "loss", relative: bool = False, clip: float | None = None,
               ax: Axes | None = None, title: str | None = None, xlabel: str = "t",
               band: bool = True) -> Figure:
    """1-D curves (interpolations or 1-D landscapes); a mapping gives labelled curves.

    band: shade the pointwise 95% band of the loss (bootstrap over data batches,
    `LandscapeResult.loss_band`) when key="loss" and per-batch losses were recorded; it is shifted by
    the same minimum as the curve when `relative` and clipped like it."""
    if isinstance(results, LandscapeResult):
        results = {"": results}
    elif not isinstance(results, Mapping):
        results = {str(i): r for i, r in enumerate(results)}
    if not results:
        raise ValueError("results: expected at least one LandscapeResult")
    fig, ax = _axes(ax)
    for label, r in results.items():
        if not isinstance(r, LandscapeResult) or r.dims != 1:
            raise ValueError(f"results[{label!r}]: expected a 1-D LandscapeResult (dims=1)")
        line, = ax.plot(r.coordinates[0], landscape_values(r, key=key, relative=relative, clip=clip),
                        marker=".", label=label or None)
        interval = r.loss_band() if band and key == "loss" else None
        if interval is not None and np.isfinite(interval.ci95).all():
            lo, hi = interval.ci95[..., 0], interval.ci95[..., 1]
            if relative:
                shift = np.nanmin(np.asarray(r.loss, dtype=np.float64))
                lo, hi = lo - shift, hi - shift
            if clip is not None:
                lo, hi = np.minimum(lo, clip), np.minimum(hi, clip)
            ax.fill_between(r.coordinates[0], lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    if any(results):
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(key)
    if title is not None:
        ax.set_title(title)
    return fig


def plot_border_rise(results: Mapping[str, LandscapeResult], *, ax: Axes | None = None,
                     title: str | None = "loss rise at the border") -> Figure:
    """The C1 quantity per model (mean border loss − centre loss, docs/methods.md §5) as bars with 95% error bars
    (bootstrap over data batches; no bar end where the interval is NaN)."""
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results: expected a non-empty mapping label -> LandscapeResult")
    fig, ax = _axes(ax)
    labels, values, errors = [], [], []
    for label, r in results.items():
        if not isinstance(r, LandscapeResult):
            raise TypeError(f"results[{label!r}]: expected a LandscapeResult, got {type(r).__name__}")
        e = r.summary()["border_rise"]
        labels.append(str(label))
        values.append(e.value)
        errors.append([e.value - e.ci95[0], e.ci95[1] - e.value] if np.isfinite(e.ci95).all() else [0.0, 0.0])
    x = np.arange(len(labels))
    ax.bar(x, values, yerr=np.asarray(errors).T, capsize=4, color="tab:blue", alpha=0.7)
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    ax.set_ylabel("border − centre loss")
    if title is not None:
        ax.set_title(title)
    return fig


def plot_trajectory(result: TrajectoryResult, *, key: str = "loss", relative: bool = True,
                    clip: float | None = 42.0, levels: int | Sequence[float] = 20, ax: Axes | None = None,
                    title: str | None = None) -> Figure:
    """Checkpoints on the PCA plane (path with markers, final point starred) over the landscape's
    contour when it was computed; axes labelled with the explained variance."""
    if not isinstance(result, TrajectoryResult):
        raise TypeError(f"result: expected a TrajectoryResult, got {type(result).__name__}")
    fig, ax = _axes(ax)
    if result.landscape is not None:
        plot_contour(result.landscape, key=key, relative=relative, clip=clip, levels=levels, ax=ax,
                     title=title if title is not None else "trajectory")
    c = np.asarray(result.coordinates)
    ax.plot(c[:, 0], c[:, 1], "-o", color="tab:red", markersize=3)
    ax.plot(c[-1:, 0], c[-1:, 1], "*", color="black", markersize=10)
    ev = np.asarray(result.explained_variance_ratio)
    ax.set_xlabel(f"PC1 ({100 * ev[0]:.1f}%)")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.1f}%)")
    return fig

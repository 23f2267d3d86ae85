"""Figures of landscapes and trajectories: the side-by-side comparison (`landscape`: 3-D surfaces of
2-D landscapes on one z scale, 1-D curves overlaid), contour, surface, 1-D curves with their 95% band,
the border rise with error bars, and trajectories on the PCA plane.

The paper plots ``loss − min(loss)`` clipped at 42 (``clip=42.0``, ``relative=True``); both are
arguments. Every function takes a result or {label: result}, `ax=`, and returns the Figure.

Example:
    >>> import numpy as np
    >>> from fastvit_analysis.landscape.grid import LandscapeResult
    >>> a = np.linspace(-1, 1, 5); z = np.add.outer(a ** 2, a ** 2)
    >>> r = LandscapeResult([a, a], z, z, np.full_like(z, np.nan), np.zeros_like(z))
    >>> fig = contour(r); fig.savefig("/dev/null", format="png")
    >>> fig = landscape({"a": r, "b": r}); len(fig.axes)
    2
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import style

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["landscape", "contour", "surface", "curve", "border_rise", "trajectory", "landscape_values"]

_KEYS = ("loss", "nll", "accuracy", "l2_norm")


def _landscape_cls():
    from ..landscape.grid import LandscapeResult

    return LandscapeResult


def landscape_values(result: Any, *, key: str = "loss", relative: bool = True,
                     clip: float | None = 42.0) -> np.ndarray:
    """The plotted values: ``result.<key>``, minus its minimum if `relative`, clipped above at `clip`."""
    if not isinstance(result, _landscape_cls()):
        raise TypeError(f"result: expected a LandscapeResult, got {type(result).__name__}")
    if key not in _KEYS:
        raise ValueError(f"key: expected one of {_KEYS}, got {key!r}")
    z = np.asarray(getattr(result, key), dtype=np.float64)
    if relative:
        z = z - np.nanmin(z)
    if clip is not None:
        z = np.minimum(z, clip)
    return z


def _require_dims(results: dict, dims: int) -> None:
    for label, r in results.items():
        if r.dims != dims:
            name = "result" if label == "" else f"result[{label!r}]"
            raise ValueError(f"{name}: expected a {dims}-D LandscapeResult (dims={dims})")


def contour(results: Any, *, key: str = "loss", relative: bool = True, clip: float | None = 42.0,
            levels: int | Sequence[float] = 20, filled: bool = False, ax=None, title: str | None = None
            ) -> "Figure":
    """Contour plot of each 2-D landscape (x: first direction, y: second), one panel per result."""
    results = style.labelled(results, _landscape_cls())
    _require_dims(results, 2)
    fig, axes = style.axes_of(ax, len(results), figsize=(4.6 * len(results), 4))
    for a, (label, r) in zip(axes, results.items()):
        z = landscape_values(r, key=key, relative=relative, clip=clip)
        x, y = r.coordinates
        cs = (a.contourf if filled else a.contour)(x, y, z.T, levels=levels, cmap="viridis")
        if filled:
            fig.colorbar(cs, ax=a)
        else:
            a.clabel(cs, inline=True, fontsize=7)
        a.set_xlabel("direction 1")
        a.set_ylabel("direction 2")
        a.set_title(title if title is not None else (label or key))
    return fig


def surface(results: Any, *, key: str = "loss", relative: bool = True, clip: float | None = 42.0, ax=None,
            title: str | None = None, cmap: str = "viridis") -> "Figure":
    """3-D surface of each 2-D landscape (the paper's figure: loss − min, clipped at 42), one panel per
    result on one z scale so that the models compare by height. `ax`: 3-D Axes."""
    results = style.labelled(results, _landscape_cls())
    _require_dims(results, 2)
    fig, axes = style.axes_of(ax, len(results), figsize=(4.2 * len(results), 3.8), projection="3d")
    surfaces = [landscape_values(r, key=key, relative=relative, clip=clip) for r in results.values()]
    finite = [z[np.isfinite(z)] for z in surfaces if np.isfinite(z).any()]
    bottom = min([float(f.min()) for f in finite] or [0.0])
    top = max([float(f.max()) for f in finite] or [1.0])
    top = top if top > bottom else bottom + 1.0
    for a, z, (label, r) in zip(axes, surfaces, results.items()):
        xx, yy = np.meshgrid(r.coordinates[0], r.coordinates[1], indexing="ij")
        # NaN points (diverged) drawn at the top, as the clipped ones
        a.plot_surface(xx, yy, np.where(np.isfinite(z), z, top), cmap=cmap, vmin=bottom, vmax=top,
                       linewidth=0, antialiased=True)
        a.set_zlim(bottom, top)
        a.set_xlabel("direction 1", fontsize=8)
        a.set_ylabel("direction 2", fontsize=8)
        a.set_zlabel(f"{key} − min" if relative else key, fontsize=8)
        a.tick_params(labelsize=7)
        a.set_title(title if title is not None else (label or key), fontsize=9)
    return fig


def curve(results: Any, *, key: str = "loss", relative: bool = False, clip: float | None = None, ax=None,
          title: str | None = None, xlabel: str = "t", band: bool = True) -> "Figure":
    """1-D curves (interpolations or 1-D landscapes), labelled by the dict's keys (a list is labelled
    0, 1, …).

    band: shade the pointwise 95% band of the loss (bootstrap over data batches,
    `LandscapeResult.loss_band`) when key="loss" and per-batch losses were recorded; it is shifted by
    the same minimum as the curve when `relative` and clipped like it."""
    if isinstance(results, (list, tuple)):
        results = {str(i): r for i, r in enumerate(results)}
    results = style.labelled(results, _landscape_cls(), "results")
    _require_dims(results, 1)
    fig, (ax,) = style.axes_of(ax, 1, figsize=(5, 4))
    for i, (label, r) in enumerate(results.items()):
        line, = ax.plot(r.coordinates[0], landscape_values(r, key=key, relative=relative, clip=clip),
                        marker=".", color=style.color(i), label=label or None)
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


def landscape(results: Any, *, ax=None, key: str = "loss", clip: float | None = 42.0) -> "Figure":
    """The comparison figure of the CLI and the report: one 3-D surface per 2-D landscape (loss − min,
    clipped at `clip`, one z scale) and one panel with every 1-D landscape (loss with its band).
    `ax`: one Axes per panel (3-D ones for the surfaces)."""
    results = style.labelled(results, _landscape_cls())
    two = {k: r for k, r in results.items() if r.dims == 2}
    one = {k: r for k, r in results.items() if r.dims != 2}
    panels = len(two) + (1 if one else 0)
    fig, axes = style.axes_of(ax, panels, figsize=(3.8 * panels, 3.6),
                              projection=["3d"] * len(two) + [None] * (1 if one else 0))
    if two:
        surface(two, key=key, relative=True, clip=clip, ax=axes[:len(two)])
    if one:
        curve(one, key=key, ax=axes[-1], xlabel="step along direction 1")
    return fig


def border_rise(results: Any, *, ax=None, title: str | None = "loss rise at the border") -> "Figure":
    """The C1 quantity per model (mean border loss − centre loss, docs/methods.md §5) as bars with 95%
    error bars (bootstrap over data batches; no bar end where the interval is NaN)."""
    results = style.labelled(results, _landscape_cls(), "results")
    fig, (ax,) = style.axes_of(ax, 1, figsize=(5, 4))
    est = [r.summary()["border_rise"] for r in results.values()]
    values = [e.value for e in est]
    errors = style.interval_errors(values, [e.ci95 for e in est])
    x = np.arange(len(est))
    ax.bar(x, values, yerr=errors if errors is not None else np.zeros((2, len(est))), capsize=4,
           color="tab:blue", alpha=0.7)
    ax.set_xticks(x)
    ax.set_xticklabels(list(results))
    ax.set_ylabel("border − centre loss")
    if title is not None:
        ax.set_title(title)
    return fig


def trajectory(results: Any, *, key: str = "loss", relative: bool = True, clip: float | None = 42.0,
               levels: int | Sequence[float] = 20, ax=None, title: str | None = None) -> "Figure":
    """Checkpoints on the PCA plane (path with markers, final point starred) over the landscape's
    contour when it was computed; axes labelled with the explained variance. One panel per result."""
    from ..landscape.trajectory import TrajectoryResult

    results = style.labelled(results, TrajectoryResult)
    fig, axes = style.axes_of(ax, len(results), figsize=(5 * len(results), 4))
    for a, (label, r) in zip(axes, results.items()):
        if r.landscape is not None:
            contour(r.landscape, key=key, relative=relative, clip=clip, levels=levels, ax=a,
                    title=title if title is not None else (label or "trajectory"))
        elif label:
            a.set_title(label)
        c = np.asarray(r.coordinates)
        a.plot(c[:, 0], c[:, 1], "-o", color="tab:red", markersize=3)
        a.plot(c[-1:, 0], c[-1:, 1], "*", color="black", markersize=10)
        ev = np.asarray(r.explained_variance_ratio)
        a.set_xlabel(f"PC1 ({100 * ev[0]:.1f}%)")
        a.set_ylabel(f"PC2 ({100 * ev[1]:.1f}%)")
    return fig

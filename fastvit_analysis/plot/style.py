"""Shared look of every figure: the Agg-safe `figure()`, colours, depth shading of blocks by kind,
π ticks for frequencies, 95% bands and error bars from intervals, and `labelled()` for the
`result | {label: result}` argument every plot function takes.

matplotlib is imported inside the functions, never at import, and no function switches the user's
backend: figures are `matplotlib.figure.Figure` objects with an Agg canvas, outside pyplot's state (no
display needed, nothing to close; `fig.savefig(...)` works, and in a notebook the figure shows as the
cell's value).

Example:
    >>> import matplotlib
    >>> before = matplotlib.get_backend()
    >>> fig, (ax,) = figure(1)
    >>> _ = ax.plot([0, 1], [1, 0]); fig.savefig("/dev/null", format="png")
    >>> matplotlib.get_backend() == before
    True
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["figure", "axes_of", "labelled", "color", "shade_kinds", "pi_ticks", "band", "errorbar",
           "interval_errors", "close", "SHADES", "COLORS"]

# the default matplotlib cycle, fixed here so that a model keeps its colour in every figure
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")
# block kind -> (colour, alpha, legend label): MSA grey and down-sampling light blue, as in the paper's Fig. 9
SHADES = {"msa": ("tab:gray", 0.25, "MSA"), "downsample": ("tab:blue", 0.12, "down-sampling")}


def color(i: int) -> str:
    """The i-th model's colour (cycling)."""
    return COLORS[i % len(COLORS)]


def figure(panels: int = 1, *, figsize: tuple[float, float] | None = None,
           projection: str | Sequence[str | None] | None = None, width_ratios: Sequence[float] | None = None
           ) -> tuple["Figure", list["Axes"]]:
    """A new Figure with `panels` axes side by side, on an Agg canvas, outside pyplot (the user's backend
    and pyplot's figure list are untouched). `projection` "3d" (or one per panel) for surfaces."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize or (4.2 * panels, 3.3), layout="constrained")
    FigureCanvasAgg(fig)
    projections = projection if isinstance(projection, (list, tuple)) else [projection] * panels
    grid = fig.add_gridspec(1, panels, width_ratios=width_ratios)
    return fig, [fig.add_subplot(grid[0, i], projection=projections[i]) for i in range(panels)]


def axes_of(ax: Any, panels: int, **kwargs: Any) -> tuple["Figure", list["Axes"]]:
    """(figure, axes) to draw `panels` panels into: a new `figure(panels, **kwargs)` when `ax` is None,
    else the given Axes (one, or a sequence of `panels`) and their figure."""
    if ax is None:
        return figure(panels, **kwargs)
    axes = list(ax) if isinstance(ax, (list, tuple)) else [ax]
    if len(axes) != panels or not all(hasattr(a, "figure") for a in axes):
        raise ValueError(f"ax: expected {'one Axes' if panels == 1 else f'{panels} Axes'} for this figure, "
                         f"got {len(axes)}")
    return axes[0].figure, axes


def labelled(results: Any, cls: type | tuple[type, ...], name: str = "result") -> dict[str, Any]:
    """`result | {label: result}` -> {label: result} ({"": result} for a single one), each checked to be
    a `cls`; a TypeError naming the argument otherwise."""
    classes = cls if isinstance(cls, tuple) else (cls,)
    what = " or ".join(c.__name__ for c in classes)
    if isinstance(results, classes):
        return {"": results}
    if isinstance(results, Mapping) and results:
        for label, r in results.items():
            if not isinstance(r, classes):
                raise TypeError(f"{name}[{label!r}]: expected a {what}, got {type(r).__name__}")
        return {str(k): v for k, v in results.items()}
    if isinstance(results, Mapping):
        raise ValueError(f"{name}: expected at least one {what}")
    raise TypeError(f"{name}: expected a {what} or a {{label: {what}}} dict, got {type(results).__name__}")


def shade_kinds(ax: "Axes", depths: Sequence[float], kinds: Sequence[str], *, legend: bool = True) -> None:
    """Shade the depth interval (half a step either side) of every MSA / down-sampling latent."""
    step = (depths[1] - depths[0]) if len(depths) > 1 else 1.0
    labelled_kinds: set[str] = set()
    for depth, kind in zip(depths, kinds):
        if kind in SHADES:
            c, alpha, label = SHADES[kind]
            ax.axvspan(depth - step / 2, depth + step / 2, color=c, alpha=alpha, lw=0, zorder=0,
                       label=None if kind in labelled_kinds else label)
            labelled_kinds.add(kind)
    if labelled_kinds and legend:
        ax.legend(loc="best", fontsize="small", frameon=False)


def pi_ticks(ax: "Axes", upper: float = math.pi) -> None:
    """x ticks at 0, 0.5π, π (those ≤ `upper`) for an axis in radians."""
    ticks = [t for t in (0.0, 0.5 * math.pi, math.pi) if t <= upper + 1e-9] or [0.0]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0", "0.5π", "1.0π"][:len(ticks)])


def _pairs(ci: Any, n: int):
    """`ci` as an (n, 2) float array, or None when absent, misshapen or all NaN (no interval to draw)."""
    import numpy as np

    if ci is None or (hasattr(ci, "__len__") and len(ci) == 0):
        return None
    c = np.asarray(ci, dtype=float)
    if c.shape != (n, 2) or np.isnan(c).all():
        return None
    return c


def band(ax: "Axes", x: Sequence[float], ci: Any, color: Any, alpha: float = 0.2) -> bool:
    """Shade the 95% interval `ci` (len(x) pairs [lo, hi]) around a line; False (nothing drawn) when the
    interval is absent or NaN."""
    c = _pairs(ci, len(x))
    if c is None:
        return False
    ax.fill_between(x, c[:, 0], c[:, 1], color=color, alpha=alpha, lw=0)
    return True


def interval_errors(values: Sequence[float], ci: Any):
    """matplotlib's `yerr` (2, n) from values and their (n, 2) intervals (0 where NaN); None without."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    c = _pairs(ci, len(v))
    if c is None:
        return None
    err = np.stack([v - c[:, 0], c[:, 1] - v])
    return np.where(np.isfinite(err), err, 0.0)


def errorbar(ax: "Axes", x: Sequence[float], values: Sequence[float], ci: Any, **kwargs: Any):
    """A line with 95% error bars when `ci` holds intervals, a plain line otherwise; returns the line."""
    yerr = interval_errors(values, ci)
    if yerr is None:
        kwargs.pop("capsize", None)
        fmt = kwargs.pop("fmt", None)
        line, = ax.plot(x, values, *([fmt] if fmt else []), **kwargs)
        return line
    kwargs.setdefault("capsize", 2)
    return ax.errorbar(x, values, yerr=yerr, **kwargs).lines[0]


def close(fig: "Figure") -> None:
    """Release a figure: a no-op for ours (not in pyplot's list); closes one the user made with pyplot."""
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None and getattr(fig, "number", None) is not None and plt.fignum_exists(fig.number):
        plt.close(fig)

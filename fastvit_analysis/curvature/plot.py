"""Deprecated: the curvature figures live in `fastvit_analysis.plot.curvature` (one figure layer for
`.plot()`, the CLI and the report). These names delegate there for one release, with a
DeprecationWarning, and keep their old return values."""
from __future__ import annotations

import warnings
from typing import Any

from ..plot.curvature import histogram_band

__all__ = ["histogram_band", "plot_max_eigenvalue_spectrum", "plot_density", "plot_block_spectra"]


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"fastvit_analysis.curvature.plot.{old} is deprecated; use fastvit_analysis.plot.curvature.{new}",
                  DeprecationWarning, stacklevel=3)


def plot_max_eigenvalue_spectrum(result: Any, axes=None, *, bins: int = 40, label: str | None = None,
                                 color: str | None = None, band: bool = True):
    """Deprecated: `fastvit_analysis.plot.curvature.max_eigen`. Returns (figure, (ax_negative, ax_positive));
    `color` is no longer used (models take the shared colours)."""
    _deprecated("plot_max_eigenvalue_spectrum", "max_eigen")
    return result.plot(axes, bins=bins, label=label, band=band)


def plot_density(result: Any, ax=None, *, grid: Any = None, sigma: float | None = None, num: int = 1000,
                 log: bool = True, label: str | None = None, band: bool = True):
    """Deprecated: `fastvit_analysis.plot.curvature.density`. Returns (figure, ax)."""
    _deprecated("plot_density", "density")
    return result.plot(ax, grid=grid, sigma=sigma, num=num, log=log, label=label, band=band)


def plot_block_spectra(result: Any, ax=None):
    """Deprecated: `fastvit_analysis.plot.curvature.blocks`. Returns the figure."""
    _deprecated("plot_block_spectra", "blocks")
    return result.plot(ax)

"""Deprecated: the landscape figures live in `fastvit_analysis.plot.landscape` (one figure layer for
`.plot()`, the CLI and the report); importing this module warns. The old names stay for one release:
plot_contour = contour, plot_surface = surface, plot_curve = curve, plot_border_rise = border_rise,
plot_trajectory = trajectory, landscape_values."""
from __future__ import annotations

import warnings

from ..plot.landscape import border_rise as plot_border_rise
from ..plot.landscape import contour as plot_contour
from ..plot.landscape import curve as plot_curve
from ..plot.landscape import landscape_values
from ..plot.landscape import surface as plot_surface
from ..plot.landscape import trajectory as plot_trajectory

__all__ = ["plot_contour", "plot_surface", "plot_curve", "plot_trajectory", "plot_border_rise",
           "landscape_values"]

warnings.warn("fastvit_analysis.landscape.plot is deprecated; use fastvit_analysis.plot.landscape",
              DeprecationWarning, stacklevel=2)

"""Deprecated: the feature figures live in `fastvit_analysis.plot.features` (one figure layer for
`.plot()`, the CLI and the report); importing this module warns. The old names stay for one release:
plot_fourier = fourier, plot_high_frequency = high_frequency, plot_variance = variance, plot_cka = cka,
plot_noise_robustness (label= as before)."""
from __future__ import annotations

import warnings

from ..plot.features import cka as plot_cka
from ..plot.features import fourier as plot_fourier
from ..plot.features import high_frequency as plot_high_frequency
from ..plot.features import robustness
from ..plot.features import variance as plot_variance
from ..plot.style import SHADES

__all__ = ["plot_fourier", "plot_high_frequency", "plot_variance", "plot_cka", "plot_noise_robustness", "SHADES"]

warnings.warn("fastvit_analysis.features.plot is deprecated; use fastvit_analysis.plot.features",
              DeprecationWarning, stacklevel=2)


def plot_noise_robustness(result, *, ax=None, label: str | None = None):
    """ΔAcc against frequency with 95% error bars; `fastvit_analysis.plot.features.robustness`."""
    return robustness({label: result} if label else result, ax=ax)

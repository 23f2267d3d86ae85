"""The figure layer: one module per analysis family, used by the results' `.plot()`, the CLI and the report.

- :mod:`.curvature`: spectrum, density, trace, max_eigen (+ max_eigen_summary), blocks
- :mod:`.landscape`: landscape (comparison), contour, surface, curve, border_rise, trajectory
- :mod:`.features`: fourier, high_frequency, variance, cka, robustness, shape_bias
- :mod:`.training`: curves
- :mod:`.style`: the shared look (Agg-safe figures, colours, depth shading, π ticks, bands, error bars)

Every function is ``f(result | {label: result}, *, ax=None, **style) -> Figure``: a dict of labelled
results compares models in one figure. Importing this package does not import matplotlib, and no
function switches the user's backend. `FIGURES` maps the CLI's analysis names (the "analysis" entry
of a result JSON) to their figure.

Example:
    >>> from fastvit_analysis import plot
    >>> from fastvit_analysis.curvature.trace import HessianTraceResult
    >>> r = HessianTraceResult(10.0, 1.0, 30, 30, "hutchinson", 100)
    >>> fig = plot.FIGURES["hessian_trace"]({"a": r, "b": r})
    >>> len(fig.axes)
    1
"""
from __future__ import annotations

from . import curvature, features, landscape, style, training

__all__ = ["curvature", "landscape", "features", "training", "style", "FIGURES"]

# CLI analysis name -> figure of its result (or of {model label: result})
FIGURES = {
    "hessian_spectrum": curvature.spectrum, "hessian_density": curvature.density,
    "hessian_trace": curvature.trace, "max_eigen": curvature.max_eigen, "block_spectra": curvature.blocks,
    "landscape": landscape.landscape, "fourier": features.fourier, "variance": features.variance,
    "cka": features.cka, "robustness": features.robustness, "shape_bias": features.shape_bias,
    "train": training.curves,
}

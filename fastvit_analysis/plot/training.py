"""Training curves: train loss and test accuracy per epoch of each TrainResult.

Example:
    >>> from fastvit_analysis.training.result import TrainResult
    >>> rows = [{"epoch": e, "train_loss": 1 / e, "test_acc": 50.0 + e} for e in (1, 2, 3)]
    >>> fig = curves({"a": TrainResult(rows, 3)}); fig.savefig("/dev/null", format="png")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import style

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["curves"]

# (panel, history column, y label)
_PANELS = (("train_loss", "train loss"), ("test_acc", "test accuracy (%)"))


def curves(results: Any, *, ax=None) -> "Figure":
    """Two panels against the epoch: train loss and test accuracy (%); epochs without a value (no test
    data) are left out. One line per result. `ax`: two Axes."""
    from ..training.result import TrainResult

    results = style.labelled(results, TrainResult)
    fig, axes = style.axes_of(ax, 2, figsize=(8, 3))
    for i, (label, r) in enumerate(results.items()):
        for a, (column, _) in zip(axes, _PANELS):
            points = [(row.get("epoch", k + 1), row.get(column)) for k, row in enumerate(r.history)]
            points = [(e, v) for e, v in points if isinstance(v, (int, float))]
            if points:
                a.plot(*zip(*points), "o-", ms=3, color=style.color(i), label=label or None)
    for a, (_, ylabel) in zip(axes, _PANELS):
        a.set_xlabel("epoch")
        a.set_ylabel(ylabel)
    if any(results):
        axes[1].legend(fontsize=8)
    return fig

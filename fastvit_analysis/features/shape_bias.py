"""Shape-vs-texture bias on cue-conflict images (Geirhos et al. 2019): of the decisions that follow one of
the two cues, the fraction that follows the shape.

Example:
    >>> import torch
    >>> from fastvit_analysis.data.synthetic import SyntheticShapes
    >>> from fastvit_analysis.features.shape_bias import shape_bias
    >>> conflict = SyntheticShapes("conflict", num_samples=90)
    >>> always_zero = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    >>> result = shape_bias(always_zero, conflict)
    >>> result.n, result.shape_decisions + result.texture_decisions + result.other_decisions
    (90, 90)
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from ..common.intervals import Estimate, wilson_interval
from ..common.modes import eval_mode
from ..common.results import Result

__all__ = ["ShapeBiasResult", "shape_bias"]


@dataclasses.dataclass
class ShapeBiasResult(Result):
    """Counts of cue-conflict decisions: following the shape, the texture, or neither; `predictions` (N,)."""

    shape_decisions: int
    texture_decisions: int
    other_decisions: int
    predictions: list[int]

    @property
    def n(self) -> int:
        return self.shape_decisions + self.texture_decisions + self.other_decisions

    def plot(self, **kwargs):
        """The shape bias as a bar with its Wilson 95% interval (`fastvit_analysis.plot.features.shape_bias`) ->
        Figure."""
        from ..plot.features import shape_bias

        return shape_bias(self, **kwargs)

    def summary(self) -> dict[str, Estimate]:
        """'shape bias' = shape / (shape + texture) decisions (Wilson over those decisions, a fraction);
        'shape decisions (%)' and 'texture decisions (%)' over all N images (Wilson, percent)."""
        cue = self.shape_decisions + self.texture_decisions
        out = {}
        if cue:
            out["shape bias"] = wilson_interval(self.shape_decisions, cue)
        out["shape decisions (%)"] = wilson_interval(self.shape_decisions, self.n, scale=100)
        out["texture decisions (%)"] = wilson_interval(self.texture_decisions, self.n, scale=100)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "shape_decisions": self.shape_decisions,
                "texture_decisions": self.texture_decisions,
                "other_decisions": self.other_decisions, "n": self.n, "predictions": list(self.predictions),
                "summary": {k: v.to_dict() for k, v in self.summary().items()}}


@torch.no_grad()
def shape_bias(model: nn.Module, dataset, *, batch_size: int = 256,
               device: torch.device | str | None = None) -> ShapeBiasResult:
    """Classify every cue-conflict image of `dataset` (a SyntheticShapes("conflict") or any data set with
    `tensors()` -> (x (N, 3, H, W), _) and `shape_targets`, `texture_targets` (N,) arrays) in eval mode."""
    for name in ("shape_targets", "texture_targets", "tensors"):
        if not hasattr(dataset, name):
            raise TypeError(f"dataset: expected a cue-conflict data set with {name!r} "
                            f"(e.g. SyntheticShapes('conflict')), got {type(dataset).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    x, _ = dataset.tensors()
    predictions = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size].to(device))
            predictions.append(logits.argmax(1).cpu())
    pred = torch.cat(predictions).numpy()
    shape = np.asarray(dataset.shape_targets)
    texture = np.asarray(dataset.texture_targets)
    shape_hits, texture_hits = int((pred == shape).sum()), int((pred == texture).sum())
    return ShapeBiasResult(shape_hits, texture_hits, len(pred) - shape_hits - texture_hits, pred.tolist())

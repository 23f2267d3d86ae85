"""How a loss combines over batches: by its reduction ('mean' or 'sum'), never by how data was batched.

A 'mean' loss over N samples is Σ_b (|b|/N)·L_b; a 'sum' loss is Σ_b L_b (curvlinops reads
`loss_fn.reduction` the same way). Every analysis that combines a loss over batches uses these
weights, so its result does not depend on the batching.

Example:
    >>> from torch import nn
    >>> loss_reduction_of(nn.CrossEntropyLoss(reduction="sum"))
    'sum'
    >>> batch_weights([30, 10], "mean"), batch_weights([30, 10], "sum")
    ([0.75, 0.25], [1.0, 1.0])
"""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["REDUCTIONS", "loss_reduction_of", "batch_weights"]

REDUCTIONS = ("mean", "sum")


def loss_reduction_of(loss_fn: Any, loss_reduction: str | None = None) -> str:
    """'mean' or 'sum': `loss_reduction` if given, else `loss_fn.reduction` where it exists, else 'mean'.

    Raises ValueError when `loss_reduction` is not one of REDUCTIONS or contradicts `loss_fn.reduction`.
    """
    attr = getattr(loss_fn, "reduction", None)
    if loss_reduction is not None:
        if loss_reduction not in REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {REDUCTIONS} or None, got {loss_reduction!r}")
        if attr in REDUCTIONS and attr != loss_reduction:
            raise ValueError(f"loss_reduction={loss_reduction!r} contradicts loss_fn.reduction={attr!r}; "
                             f"drop loss_reduction= or change the loss")
        return loss_reduction
    # anything else (no attribute, 'none', 'batchmean'...) reads as a mean; a non-scalar loss is then
    # refused by the analysis's own check, with the shape it returned
    return attr if attr in REDUCTIONS else "mean"


def batch_weights(sizes: Sequence[int], reduction: str, total: int | None = None) -> list[float]:
    """Weight of each batch's loss in the loss over all samples: |b|/total ('mean') or 1 ('sum').

    `total` defaults to sum(sizes); pass the global count when other processes hold other batches.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "sum":
        return [1.0] * len(sizes)
    total = float(sum(sizes) if total is None else total)
    return [s / total for s in sizes]

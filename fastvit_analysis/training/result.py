"""`TrainResult`: what `train` returns (per-epoch history, where it wrote, how it ended)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..common.results import Result

__all__ = ["TrainResult"]


@dataclass
class TrainResult(Result):
    """Outcome of `train`.

    Attributes:
        history: one dict per completed epoch: epoch, train_loss, train_acc (%), lr, test_loss, test_acc (%)
            (None without test data), samples, test_samples, seconds.
        epochs_completed: last completed epoch (counting from 1).
        out: output folder (None when nothing was written); last_checkpoint: path of out/last.pt.
        resumed_from_epoch: epoch restored from out/last.pt (None for a fresh run).
        stopped_early: True when `max_minutes` ended the run before `epochs`.
        world_size: number of data-parallel processes that trained (1 without torchrun).
        model: the trained model (not serialised).
    """

    history: list[dict[str, Any]]
    epochs_completed: int
    out: str | None = None
    last_checkpoint: str | None = None
    resumed_from_epoch: int | None = None
    stopped_early: bool = False
    elapsed_s: float = 0.0
    model_name: str | None = None
    world_size: int = 1
    model: nn.Module | None = field(default=None, repr=False, metadata={"serialize": False})

    def plot(self, **kwargs):
        """Train loss and test accuracy per epoch (`fastvit_analysis.plot.training.curves`) -> Figure."""
        from ..plot.training import curves

        return curves(self, **kwargs)

    @property
    def final_metrics(self) -> dict[str, Any]:
        return dict(self.history[-1]) if self.history else {}

"""`TrainResult`: what `train` returns (per-epoch history, where it wrote, how it ended)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..common.intervals import Estimate, wilson_interval
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

    def summary(self) -> dict[str, Estimate]:
        """The last epoch's numbers: "test_accuracy" (Wilson 95% interval, percent, n = test images;
        the test pass is a clean evaluation, so its correct count is whole), "test_loss", "train_loss"
        and "train_accuracy" (percent; no interval: no per-sample record, and mixup/cutmix make the
        training accuracy a soft count), each with n = its samples. Empty before the first epoch.

        Example:
            >>> r = TrainResult([{"epoch": 1, "train_loss": 1.2, "train_acc": 40.0, "samples": 64,
            ...                   "test_loss": 1.1, "test_acc": 50.0, "test_samples": 32}], 1)
            >>> f"{r.summary()['test_accuracy']:.3g}", r.summary()["test_accuracy"].n
            ('50 [33.6, 66.4]', 32)
        """
        last = self.final_metrics
        nan = (float("nan"), float("nan"))
        out: dict[str, Estimate] = {}
        n_test, acc = last.get("test_samples"), last.get("test_acc")
        if isinstance(n_test, int) and n_test > 0 and isinstance(acc, (int, float)):
            out["test_accuracy"] = wilson_interval(int(round(acc * n_test / 100.0)), n_test, scale=100.0)
            if isinstance(last.get("test_loss"), (int, float)):
                out["test_loss"] = Estimate(float(last["test_loss"]), nan, n_test)
        n_train = int(last.get("samples") or 0)
        for key, col in (("train_loss", "train_loss"), ("train_accuracy", "train_acc")):
            if isinstance(last.get(col), (int, float)):
                out[key] = Estimate(float(last[col]), nan, n_train)
        return out

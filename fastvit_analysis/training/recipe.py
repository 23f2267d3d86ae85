"""The training recipe (docs/methods.md §4): its hyper-parameters, checked once, and the optimizer, schedule, Mixup
and loss built from them.

Recipe: AdamW (lr 1.25e-4, wd 0.05), batch 96, linear warm-up then cosine decay (per step), gradient
clipping 5, label smoothing 0.1, Mixup 1.0 / CutMix 0.8, RandAugment m9-n2, random crop (pad 4) +
horizontal flip, DropPath. Every piece can be switched off (0, None or False).

Example:
    >>> recipe = Recipe(epochs=10)
    >>> recipe.warmup_epochs, recipe.batch_size
    (1, 96)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Recipe", "build_optimizer", "build_scheduler", "build_mixer", "build_criterion"]


def _check_number(name: str, value: Any, *, allow_zero: bool = True, integer: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (value < 0 if allow_zero else value <= 0) or \
            (isinstance(value, float) and not math.isfinite(value)):
        kind = "int" if integer else "number"
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} {kind}, got {value!r}")


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters that decide the trained weights (a resumed run must use the same ones).

    `batch_size` is the global batch: under torchrun each of the W ranks takes batch_size / W samples per
    step, so the optimizer sees the same number of samples per step and the same schedule at any W.
    `warmup_epochs=None` becomes min(5, epochs // 10).
    """

    epochs: int
    lr: float = 1.25e-4
    weight_decay: float = 0.05
    warmup_epochs: int | None = None
    batch_size: int = 96
    label_smoothing: float = 0.1
    mixup: float = 1.0
    cutmix: float = 0.8
    randaugment: str | None = "rand-m9-n2"
    crop_flip: bool = True
    grad_clip: float | None = 5.0
    drop_path: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_number("epochs", self.epochs, allow_zero=False, integer=True)
        _check_number("batch_size", self.batch_size, allow_zero=False, integer=True)
        _check_number("lr", self.lr, allow_zero=False)
        _check_number("weight_decay", self.weight_decay)
        for name in ("label_smoothing", "mixup", "cutmix"):
            _check_number(name, getattr(self, name))
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.grad_clip is not None:
            _check_number("grad_clip", self.grad_clip, allow_zero=False)
        if self.drop_path is not None and not (isinstance(self.drop_path, (int, float)) and 0 <= self.drop_path < 1):
            raise ValueError(f"drop_path must be in [0, 1) or None, got {self.drop_path!r}")
        if self.randaugment is not None and not isinstance(self.randaugment, str):
            raise TypeError(f"randaugment must be a timm RandAugment config string or None, got {self.randaugment!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        if self.warmup_epochs is None:
            object.__setattr__(self, "warmup_epochs", min(5, self.epochs // 10))
        _check_number("warmup_epochs", self.warmup_epochs, integer=True)
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs})")

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def epoch_seed(self, epoch: int, rank: int = 0) -> int:
        """Seed of one epoch's shuffling, augmentation, Mixup and DropPath draws on one rank."""
        return self.seed * 100_003 + epoch + 1_000_003 * rank


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int):
    """timm's per-step cosine schedule with a linear warm-up prefix, from lr / 100 to lr and back to lr / 100."""
    from timm.scheduler import CosineLRScheduler

    return CosineLRScheduler(optimizer, t_initial=max((recipe.epochs - recipe.warmup_epochs) * steps_per_epoch, 1),
                             lr_min=recipe.lr * 1e-2, warmup_t=recipe.warmup_epochs * steps_per_epoch,
                             warmup_lr_init=recipe.lr * 1e-2, warmup_prefix=True, t_in_epochs=False)


def build_mixer(recipe: Recipe, num_classes: int):
    """timm's Mixup/CutMix (with label smoothing folded into the soft targets), or None when both are off."""
    if not recipe.mixing:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, label_smoothing=recipe.label_smoothing,
                 num_classes=num_classes)


def build_criterion(recipe: Recipe) -> nn.Module:
    """Soft-target cross-entropy with Mixup/CutMix, else label-smoothed (or plain) cross-entropy."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if recipe.mixing:
        return SoftTargetCrossEntropy()
    if recipe.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    return nn.CrossEntropyLoss()

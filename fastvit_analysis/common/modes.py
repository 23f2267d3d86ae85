"""Train/eval flags: evaluate a model and restore every submodule's own flag afterwards.

`model.train(was_training)` would set every submodule to the top-level flag, unfreezing BatchNorm
layers a user had put in eval mode inside a training model; `eval_mode` restores each one.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    >>> _ = net.train(); _ = net[1].eval()            # a frozen BatchNorm inside a training model
    >>> with eval_mode(net):
    ...     net.training, net[1].training
    (False, False)
    >>> net.training, net[0].training, net[1].training
    (True, True, False)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

__all__ = ["eval_mode", "restore_modes", "training_modes"]


def training_modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Each submodule (the model included) with its current `training` flag."""
    return [(m, m.training) for m in model.modules()]


def restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    """Set back the flags recorded by `training_modes`."""
    for module, flag in modes:
        module.training = flag


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model.eval()` for the block; on exit each submodule gets back its own flag."""
    modes = training_modes(model)
    model.eval()
    try:
        yield model
    finally:
        restore_modes(modes)

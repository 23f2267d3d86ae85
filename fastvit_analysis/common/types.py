"""Type aliases shared by the analyses."""
from __future__ import annotations

from typing import Callable

from torch import Tensor

__all__ = ["LossFn"]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""(outputs, targets) -> scalar loss tensor, e.g. nn.CrossEntropyLoss()."""

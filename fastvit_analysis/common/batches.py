"""Normalise the `data` argument of every analysis: one (inputs, targets) batch or an iterable of batches."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]


def is_single_batch(data: Any) -> bool:
    """True for one `(inputs, targets)` pair (a tuple/list whose first item is a tensor)."""
    return isinstance(data, (tuple, list)) and len(data) >= 2 and isinstance(data[0], Tensor)


def iter_batches(data: Any, *, device: torch.device | str | None = None,
                 name: str = "data") -> Iterator[Batch]:
    """Yield `(inputs, targets)` pairs from one batch or any iterable of batches (a DataLoader).

    Raises ValueError naming `name` when `data` yields no batch, or a batch is not a pair.
    """
    source: Iterable[Any] = [data] if is_single_batch(data) else data
    try:
        iterator = iter(source)
    except TypeError:
        raise ValueError(f"{name}: expected one (inputs, targets) batch or an iterable of batches, "
                         f"got {type(data).__name__}") from None
    count = 0
    for batch in iterator:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2 or not isinstance(batch[0], Tensor):
            raise ValueError(f"{name}: batch {count} is not an (inputs, targets) pair of tensors")
        x, y = batch[0], batch[1]
        if x.shape[0] == 0:
            raise ValueError(f"{name}: batch {count} is empty (inputs.shape={tuple(x.shape)})")
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        count += 1
        yield x, y
    if count == 0:
        raise ValueError(f"{name} is empty: expected one (inputs, targets) batch or a non-empty "
                         f"iterable of batches")


def materialize_batches(data: Any, *, device: torch.device | str | None = None,
                        name: str = "data") -> list[Batch]:
    """`iter_batches` collected into a list (for solvers that pass over the data many times)."""
    return list(iter_batches(data, device=device, name=name))


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without either)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")

"""Data-parallel pieces of `train` under torchrun: the DDP wrapper, sums over ranks, and rank-0 decisions
that every rank follows (so an error on rank 0 stops all ranks instead of hanging them).

In one process (no process group) every function is the identity:
    >>> import torch
    >>> sum_over_ranks([1.0, 2.0], torch.device("cpu"))
    [1.0, 2.0]
    >>> from_rank_zero(lambda: 3)
    3
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import torch
from torch import nn

from ..common.distributed import broadcast_from_rank0, is_rank_zero, world_size

__all__ = ["wrap_data_parallel", "unwrap", "sum_over_ranks", "any_rank", "from_rank_zero"]

T = TypeVar("T")


def wrap_data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel(model) under torchrun (it averages gradients over ranks and starts every rank
    from rank 0's weights), else the model itself."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model


def sum_over_ranks(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sums of `values` over ranks (float64, on `device`: NCCL reduces CUDA tensors only)."""
    if world_size() == 1:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any rank."""
    return sum_over_ranks([1.0 if flag else 0.0], device)[0] > 0


def from_rank_zero(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and give its value to every rank; an exception on rank 0 is raised on all."""
    outcome: Any = None
    if is_rank_zero():
        try:
            outcome = ("ok", fn())
        except Exception as exc:  # handed to the other ranks, then raised here too
            outcome = ("error", exc)
    kind, value = broadcast_from_rank0(outcome)
    if kind == "error":
        raise value
    return value

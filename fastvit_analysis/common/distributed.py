"""torch.distributed helpers that are no-ops in a single process (no group initialised).

Example:
    >>> from fastvit_analysis.common.distributed import rank, world_size, all_gather
    >>> rank(), world_size(), all_gather({"a": 1})
    (0, 1, [{'a': 1}])
"""
from __future__ import annotations

from typing import Any

__all__ = ["is_distributed", "rank", "world_size", "is_rank_zero", "barrier", "broadcast_from_rank0",
           "all_gather"]


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised (e.g. under torchrun)."""
    try:
        import torch.distributed as dist
    except Exception:  # pragma: no cover - torch built without distributed
        return False
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    if not is_distributed():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def world_size() -> int:
    if not is_distributed():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def is_rank_zero() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast_from_rank0(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a picklable object)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered

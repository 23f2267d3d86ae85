"""This process's shard of the data for a distributed curvature operator (DistributedSampler semantics).

Sample i of the data (counted across batches, in order) belongs to rank i mod world_size, with no
padding: shards may differ by one sample, and every sample is used exactly once over all ranks.
Batches keep their order; each shrinks to its samples of this rank (empty ones are dropped).

Example:
    >>> import torch
    >>> data = [(torch.arange(5.0), torch.arange(5)), (torch.arange(5.0, 8.0), torch.arange(5, 8))]
    >>> [y.tolist() for _, y in shard_batches(data, rank=1, world_size=3)]
    [[1, 4], [7]]
"""
from __future__ import annotations

from typing import Any

import torch

from ..common import distributed as dist_utils
from ..common.batches import Batch, iter_batches


def shard_batches(data: Any, *, rank: int | None = None, world_size: int | None = None) -> list[Batch]:
    """This rank's samples of `data` (one batch or an iterable of batches) as a list of batches.

    rank / world_size default to the initialised torch.distributed group (0 / 1 without one). Every
    rank must pass the same `data`. Raises ValueError (on every rank alike) when some rank would get
    no sample.
    """
    rank = dist_utils.rank() if rank is None else rank
    world = dist_utils.world_size() if world_size is None else world_size
    if not isinstance(world, int) or world < 1 or not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got rank={rank!r}, "
                         f"world_size={world!r}")
    shard, offset = [], 0
    for x, y in iter_batches(data, name="data"):
        n = x.shape[0]
        first = (rank - offset) % world          # first position of this batch that is ours
        index = torch.arange(first, n, world, device=x.device)
        if index.numel():
            shard.append((x.index_select(0, index), y.index_select(0, index)))
        offset += n
    if offset < world:
        raise ValueError(f"data: {offset} sample(s) cannot be shared by world_size={world} ranks "
                         f"(every rank needs at least one)")
    return shard

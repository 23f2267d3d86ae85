"""Batches for training (shuffled, augmented, sharded over data-parallel ranks) and for evaluation.

Training data is a data spec string, a Dataset or one (x, y) batch: it is read through a
DistributedSampler (num_replicas = world size, also in one process), so rank r of W takes every W-th
sample of the epoch's permutation and the union of the ranks' step-k batches is the one-process step-k
batch. An iterable of batches (a DataLoader) is used as it is, in one process only.

Example:
    >>> import torch
    >>> b = TrainBatches((torch.randn(8, 3, 4, 4), torch.arange(8) % 2), batch_size=4, crop_flip=False)
    >>> len(b), [tuple(x.shape) for x, _ in b.epoch(0)]
    (2, [(4, 3, 4, 4), (4, 3, 4, 4)])
"""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from ..common.batches import is_single_batch, iter_batches, materialize_batches

__all__ = ["TrainBatches", "test_batches", "random_crop_flip", "num_classes_of", "shard_batches"]


def num_classes_of(model: nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear):
        return head.out_features
    raise ValueError("train: cannot tell the model's number of classes (no .num_classes or Linear classifier); "
                     "set model.num_classes")


def random_crop_flip(x: Tensor, pad: int = 4) -> Tensor:
    """Per-sample random crop from a zero-padded copy + horizontal flip, on a (B, C, H, W) batch."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    flip = torch.rand(b) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


class TrainBatches:
    """One epoch of training batches at a time; `batch_size` is the global batch over `world_size` ranks."""

    def __init__(self, data: Any, *, batch_size: int, randaugment: str | None = None, crop_flip: bool = True,
                 num_samples: int | None = None, seed: int = 0, num_workers: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of the world size ({world_size}): it is "
                             f"the global batch, each rank takes batch_size / world_size samples per step")
        self.tensor_augment = False
        self.spec_num_classes: int | None = None
        self.sampler: DistributedSampler | None = None
        self.loader: Iterable | None = None
        dataset: Dataset | None = None
        if isinstance(data, str):
            from ..data import build_dataset, build_transform, parse_spec

            spec = parse_spec(data)
            self.spec_num_classes = spec.num_classes
            transform = build_transform(spec, train=True, randaugment=randaugment, crop=crop_flip, flip=crop_flip)
            dataset = build_dataset(data, "train", transform=transform, num_samples=num_samples, seed=seed)
        else:
            if num_samples is not None:
                raise ValueError("train: num_samples applies only to a data spec string")
            if randaugment:
                warnings.warn("train: RandAugment needs PIL images and is applied only when data is a data "
                              "spec string ('synthetic', 'cifar10:/path', ...); it is skipped here", stacklevel=3)
            self.tensor_augment = crop_flip
            if is_single_batch(data):
                dataset = TensorDataset(data[0], data[1])
            elif isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
                dataset = data
            elif world_size > 1:
                raise ValueError("train under torchrun needs data as a data spec string, a Dataset or one "
                                 "(x, y) batch (it is sharded with a DistributedSampler), not an iterable of batches")
            else:
                self.loader = data if hasattr(data, "__len__") else materialize_batches(data, name="data")
        if dataset is not None:
            if len(dataset) == 0:  # type: ignore[arg-type]
                raise ValueError("data is empty")
            per_rank = batch_size // world_size
            self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
            # drop the last partial batch: Mixup needs even batches and BatchNorm more than one sample
            drop_last = len(self.sampler) >= per_rank
            self.loader = DataLoader(dataset, batch_size=per_rank, sampler=self.sampler, drop_last=drop_last,
                                     num_workers=num_workers)
        if len(self.loader) == 0:  # type: ignore[arg-type]
            raise ValueError("data is empty")

    def __len__(self) -> int:
        """Optimizer steps per epoch (the same on every rank)."""
        return len(self.loader)  # type: ignore[arg-type]

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of `epoch` (its permutation is fixed by the seed and the epoch, at any world size)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        for x, y in iter_batches(self.loader, name="data"):
            yield (random_crop_flip(x) if self.tensor_augment and x.ndim == 4 else x), y


def test_batches(data: Any, batch_size: int, num_workers: int = 0) -> Any:
    """Evaluation batches from a spec string (its "test" split), a Dataset, a loader or one batch."""
    if data is None:
        return None
    if isinstance(data, str):
        from ..data import build_loader

        return build_loader(data, "test", batch_size=max(batch_size, 256), num_workers=num_workers)
    if isinstance(data, Dataset) and not is_single_batch(data):
        return DataLoader(data, batch_size=max(batch_size, 256), shuffle=False, num_workers=num_workers)
    return data


def shard_batches(data: Any, rank: int, world_size: int) -> Iterator[Any]:
    """Batches i with i % world_size == rank: every batch on exactly one rank, uneven counts allowed."""
    if is_single_batch(data):
        if rank == 0:
            yield data
        return
    for i, batch in enumerate(data):
        if i % world_size == rank:
            yield batch

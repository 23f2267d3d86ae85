"""Progress bars: tqdm on rank 0 only, switched off by `progress=False` or FASTVIT_PROGRESS=0."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def _is_rank_zero() -> bool:
    try:
        import torch.distributed as dist

        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    except Exception:  # pragma: no cover - defensive
        return True


def progress_enabled(progress: bool = True) -> bool:
    return bool(progress) and os.environ.get("FASTVIT_PROGRESS", "1") != "0" and _is_rank_zero()


def progress_bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str | None = None,
                 progress: bool = True, unit: str = "it", leave: bool = False) -> tqdm:
    """A tqdm bar that is silent when disabled (progress=False, FASTVIT_PROGRESS=0, or not rank 0)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr,
                disable=not progress_enabled(progress), dynamic_ncols=True)

"""Progress bars: tqdm on rank 0 only, switched off by `progress=False` or FASTVIT_PROGRESS=0."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

from .distributed import is_rank_zero

T = TypeVar("T")


def progress_enabled(progress: bool = True) -> bool:
    return bool(progress) and os.environ.get("FASTVIT_PROGRESS", "1") != "0" and is_rank_zero()


def progress_bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str | None = None,
                 progress: bool = True, unit: str = "it", leave: bool = False) -> tqdm:
    """A tqdm bar that is silent when disabled (progress=False, FASTVIT_PROGRESS=0, or not rank 0)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr,
                disable=not progress_enabled(progress), dynamic_ncols=True)

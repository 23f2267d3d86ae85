"""Base of every result dataclass: `.to_dict()` gives JSON-serialisable data, `.save_json(path)` writes it.

JSON conventions: NaN and ±Inf are stored as null (standard JSON; `nan_for_none` turns them back into
NaN floats when reading), result files get the mode the umask allows (0o666 & ~umask), and a file is
replaced atomically via a uniquely named temporary file in the same folder.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .jsonio import atomic_write_bytes, atomic_write_text, default_file_mode, read_json, unique_temp_path

__all__ = ["to_jsonable", "nan_for_none", "Result", "atomic_write_bytes", "atomic_write_text",
           "default_file_mode", "read_json", "unique_temp_path"]


def to_jsonable(value: Any) -> Any:
    """Tensors/arrays -> nested lists, numpy scalars -> Python numbers, NaN/Inf -> None (JSON null), so
    that the JSON stays standard and no reader meets the string "nan".

    Example:
        >>> to_jsonable({"a": torch.tensor([1.0, float("nan")]), "b": float("inf")})
        {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return to_jsonable(value.tolist() if value.ndim else value.item())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def nan_for_none(value: Any) -> Any:
    """Inverse of to_jsonable's NaN rule: None -> NaN, recursively in lists (for numeric fields).

    Example:
        >>> nan_for_none([1.0, None])
        [1.0, nan]
    """
    if value is None:
        return float("nan")
    if isinstance(value, list):
        return [nan_for_none(v) for v in value]
    return value


class Result:
    """Mixin for result dataclasses. Fields with `metadata={"serialize": False}` are left out of
    `to_dict()` (e.g. large eigenvectors). A result with a `summary()` (name -> Estimate, docs/methods.md §5)
    also gets a "summary" entry of {"value", "ci95", "n"} dicts."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get("serialize", True):
                out[f.name] = to_jsonable(getattr(self, f.name))
        summary = getattr(self, "summary", None)
        if callable(summary):
            out["summary"] = {str(k): e.to_dict() for k, e in summary().items()}
        return out

    def save_json(self, path: str | os.PathLike, *, provenance: bool = True) -> Path:
        """Write `to_dict()` atomically to `path`, with a "provenance" block (versions, UTC time, world
        size: common/provenance.py) unless provenance=False."""
        payload = self.to_dict()
        if provenance:
            from .provenance import environment

            payload["provenance"] = environment()
        atomic_write_text(path, json.dumps(payload, indent=2))
        return Path(path)

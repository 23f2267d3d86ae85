"""Base of every result dataclass: `.to_dict()` gives JSON-serialisable data, `.save_json(path)` writes it."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def to_jsonable(value: Any) -> Any:
    """Tensors/arrays -> nested lists, numpy scalars -> Python numbers, NaN/Inf -> None-free floats kept
    as strings 'nan'/'inf' so that the JSON stays standard."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return to_jsonable(value.tolist() if value.ndim else value.item())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` via a temporary file + rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Result:
    """Mixin for result dataclasses. Fields with `metadata={"serialize": False}` are left out of
    `to_dict()` (e.g. large eigenvectors). A result with a `summary()` (name -> Estimate, SPEC §5)
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

    def save_json(self, path: str | os.PathLike) -> Path:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))
        return Path(path)

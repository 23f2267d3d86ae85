"""Base of every result dataclass: `.to_dict()` gives JSON-serialisable data, `.save_json(path)` writes it.

JSON conventions: NaN and ±Inf are stored as null (standard JSON; `nan_for_none` turns them back into
NaN floats when reading), result files get the mode the umask allows (0o666 & ~umask), and a file is
replaced atomically via a uniquely named temporary file in the same folder.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .jsonio import atomic_write_bytes, atomic_write_text, default_file_mode, read_json, unique_temp_path

__all__ = ["to_jsonable", "nan_for_none", "Result", "load_result", "atomic_write_bytes", "atomic_write_text",
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Rebuild the result from its `to_dict()`: each field from its entry, converted by the field's
        annotation (tensors and arrays from nested lists, null -> NaN in float fields via `nan_for_none`,
        nested results and Estimates by their own `from_dict`). Derived entries ("type", "summary") are
        recomputed, not read; fields left out of `to_dict()` get their default (None without one).

        Example:
            >>> from fastvit_analysis.curvature.trace import HessianTraceResult
            >>> r = HessianTraceResult(10.0, float("nan"), 30, 30, "hutchinson", 100)
            >>> HessianTraceResult.from_dict(r.to_dict()).stderr
            nan
        """
        if not isinstance(data, dict):
            raise TypeError(f"data: expected the dict of {cls.__name__}.to_dict(), got {type(data).__name__}")
        kind = data.get("type")
        if kind is not None and kind != cls.__name__:
            raise ValueError(f"data: holds a {kind}, not a {cls.__name__}")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data and f.metadata.get("serialize", True):
                values[f.name] = _from_jsonable(hints.get(f.name, Any), data[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if f.metadata.get("serialize", True):
                    raise ValueError(f"data: {cls.__name__} needs the entry {f.name!r}")
                values[f.name] = None
        return cls(**values)


# type name (the "type" entry of to_dict) -> module defining it; imported on first use by load_result
_RESULT_MODULES = {
    "HessianSpectrumResult": "fastvit_analysis.curvature.spectrum",
    "HessianTraceResult": "fastvit_analysis.curvature.trace",
    "HessianDensityResult": "fastvit_analysis.curvature.density",
    "MaxEigenvalueSpectrumResult": "fastvit_analysis.curvature.max_eigen",
    "BlockSpectraResult": "fastvit_analysis.curvature.blocks", "LandscapeResult": "fastvit_analysis.landscape.grid",
    "TrajectoryResult": "fastvit_analysis.landscape.trajectory", "FourierResult": "fastvit_analysis.features.fourier",
    "VarianceResult": "fastvit_analysis.features.variance", "CKAResult": "fastvit_analysis.features.cka",
    "NoiseRobustnessResult": "fastvit_analysis.features.noise",
    "ShapeBiasResult": "fastvit_analysis.features.shape_bias", "TrainResult": "fastvit_analysis.training.result",
    "ClaimsResult": "fastvit_analysis.claims",
}
# JSON written before the <Analysis>Result names (one release): old "type" -> today's class name
_RENAMED_TYPES = {old: old + "Result" for old in ("HessianSpectrum", "HessianTrace", "HessianDensity",
                                                   "MaxEigenvalueSpectrum", "BlockSpectra")}


def load_result(data: dict[str, Any], kind: str | None = None) -> Result:
    """The result object of a `to_dict()` (e.g. the "result" entry of a CLI result JSON), its class named
    by the dict's "type" entry or, for dicts without one, by `kind` (a class name of `_RESULT_MODULES`).

    Example:
        >>> from fastvit_analysis.curvature.trace import HessianTraceResult
        >>> load_result(HessianTraceResult(10.0, 1.0, 30, 30, "hutchinson", 100).to_dict()).value
        10.0
    """
    if not isinstance(data, dict):
        raise TypeError(f"data: expected a result dict, got {type(data).__name__}")
    name = data.get("type", kind)
    name = _RENAMED_TYPES.get(name, name)
    if name not in _RESULT_MODULES:
        raise ValueError(f"data: unknown result type {name!r}; known: {sorted(_RESULT_MODULES)}")
    cls = getattr(importlib.import_module(_RESULT_MODULES[name]), name)
    return cls.from_dict(data)


def _from_jsonable(hint: Any, value: Any) -> Any:
    """`value` (as `to_jsonable` wrote it) converted back to the annotation `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if value is None and len(rest) < len(args):
            return None
        return _from_jsonable(rest[0], value) if len(rest) == 1 else value
    if hint is torch.Tensor:
        return torch.from_numpy(_array(value))
    if hint is np.ndarray:
        return _array(value)
    if hint is float:
        return float(nan_for_none(value))
    if value is None:
        return None
    if origin in (list, tuple) and args:
        items = [_from_jsonable(args[0], v) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict and len(args) == 2:
        return {k: _from_jsonable(args[1], v) for k, v in value.items()}
    if isinstance(hint, type) and hasattr(hint, "from_dict"):
        return hint.from_dict(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        fields = typing.get_type_hints(hint)
        return hint(**{k: _from_jsonable(fields.get(k, Any), v) for k, v in value.items() if k in fields})
    return value


def _array(value: Any) -> np.ndarray:
    """Nested lists -> array: booleans stay bool, integers int64, floats (and null -> NaN) float64."""
    arr = np.asarray(nan_for_none(value))
    return arr.astype(np.float64) if arr.dtype.kind in "fO" or arr.size == 0 else arr

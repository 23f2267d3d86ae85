"""One fingerprint of everything a stored result depends on: weights, data, settings, algorithm version.

A resumable sweep (max-eigen spectrum, noise robustness, landscape, trajectory) stores the fingerprint
of its first run next to its points; a re-run into the same folder compares field by field and refuses
with a message naming what differs (`describe_mismatch`). Tensors are hashed as raw bytes with SHA-256
on the CPU, so a fingerprint is deterministic and costs one read of the bytes (~1 GB/s), far below
any analysis that runs the model on them.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fastvit_analysis.common.fingerprint import fingerprint, describe_mismatch
    >>> torch.manual_seed(0) and None
    >>> model = nn.Linear(3, 2)
    >>> data = (torch.ones(4, 3), torch.zeros(4, dtype=torch.long))
    >>> a = fingerprint("demo/1", model=model, data=data, settings={"top_k": 3})
    >>> sorted(a)
    ['algorithm', 'buffers', 'data', 'parameters', 'settings']
    >>> b = fingerprint("demo/1", model=model, data=data, settings={"top_k": 5})
    >>> describe_mismatch(a, b)
    ['setting top_k (stored 3, now 5)']
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from .batches import iter_batches

__all__ = ["hash_tensors", "TensorHasher", "hash_data", "fingerprint", "describe_mismatch"]


class TensorHasher:
    """Incremental SHA-256 over tensors (name, shape, dtype and bytes); feed batches as they are read.

    Example:
        >>> h = TensorHasher(); h.update(torch.arange(3)); len(h.hexdigest())
        64
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.count = 0

    def update(self, tensor: Tensor, name: str = "") -> None:
        t = tensor.detach()
        if t.is_complex():
            t = torch.view_as_real(t)
        t = t.to("cpu").contiguous()
        self._h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        if t.numel():
            self._h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        self.count += 1

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def hash_tensors(named: Mapping[str, Tensor] | Iterable[Mapping[str, Tensor]]) -> str:
    """SHA-256 over a dict name -> tensor (sorted by name), or over a list of such dicts in order
    (e.g. landscape directions).

    Example:
        >>> hash_tensors({"w": torch.ones(2)}) == hash_tensors({"w": torch.ones(2)})
        True
        >>> hash_tensors({"w": torch.ones(2)}) == hash_tensors({"w": torch.ones(2, dtype=torch.float64)})
        False
    """
    groups = [named] if isinstance(named, Mapping) else list(named)
    h = TensorHasher()
    for group in groups:
        for name in sorted(group):
            h.update(group[name], name)
    return h.hexdigest()


def hash_data(data: Any, *, name: str = "data") -> str:
    """SHA-256 over every (inputs, targets) batch of `data`, in order (one batch or an iterable).

    Iterates `data` once; a loader with random augmentation gives a different hash on every pass (and so
    refuses to resume, which is the safe answer: its results are not reproducible either).
    """
    h = TensorHasher()
    for x, y in iter_batches(data, name=name):
        h.update(x, "x")
        h.update(y, "y")
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """Settings as stable JSON values (tuples -> lists, tensors/callables -> a readable name)."""
    if isinstance(value, Tensor):
        return {"tensor_sha256": hash_tensors({"t": value})}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if callable(value):
        return getattr(value, "__qualname__", type(value).__qualname__)
    return repr(value)


def fingerprint(algorithm: str, *, model: nn.Module | None = None,
                parameters: Mapping[str, Tensor] | None = None, buffers: Mapping[str, Tensor] | None = None,
                data: Any = None, data_hash: str | None = None,
                settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fingerprint dict of one analysis run (JSON-safe, compared field by field on resume).

    Args:
        algorithm: name and version of the computation, e.g. "max_eigenvalue_spectrum/2"; bump the
            version when a change alters stored numbers.
        model: hashes its parameters and buffers (unless `parameters` / `buffers` are given).
        data: batches to hash (`hash_data`), or `data_hash` when the caller hashed them already.
        settings: every argument the numbers depend on (a dict of JSON-able values).
    """
    out: dict[str, Any] = {"algorithm": str(algorithm)}
    if parameters is None and model is not None:
        parameters = dict(model.named_parameters())
    if buffers is None and model is not None:
        buffers = dict(model.named_buffers())
    if parameters is not None:
        out["parameters"] = hash_tensors(parameters)
    if buffers is not None:
        out["buffers"] = hash_tensors(buffers)
    if data_hash is None and data is not None:
        data_hash = hash_data(data)
    if data_hash is not None:
        out["data"] = data_hash
    out["settings"] = _plain(dict(settings or {}))
    return json.loads(json.dumps(out, sort_keys=True))


_WHAT = {"parameters": "weights (model parameters)", "buffers": "weights (model buffers, e.g. BatchNorm statistics)",
         "data": "data (the inputs/targets used)", "algorithm": "algorithm version"}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def describe_mismatch(stored: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words ([] when they agree).

    Example:
        >>> describe_mismatch({"algorithm": "a/1", "data": "x", "settings": {}},
        ...                   {"algorithm": "a/1", "data": "y", "settings": {}})
        ['data (the inputs/targets used)']
    """
    stored = dict(stored or {})
    diffs: list[str] = []
    for key in ("algorithm", "parameters", "buffers", "data"):
        if stored.get(key) != wanted.get(key):
            if key == "algorithm":
                diffs.append(f"algorithm version (stored {stored.get(key)!r}, now {wanted.get(key)!r})")
            else:
                diffs.append(_WHAT[key])
    old, new = stored.get("settings") or {}, wanted.get("settings") or {}
    if not isinstance(old, Mapping):
        old = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"setting {key} (stored {_short(old.get(key, '<unset>'))}, now "
                         f"{_short(new.get(key, '<unset>'))})")
    for key in sorted(set(stored) - {"algorithm", "parameters", "buffers", "data", "settings"}):
        if stored.get(key) != wanted.get(key):
            diffs.append(key)
    return diffs

"""Estimates with their 95% interval and the count they rest on (methods: docs/methods.md).

`Estimate` is what every `summary()` holds and what JSON stores as {"value", "ci95", "n"}.

Example:
    >>> e = Estimate(0.5, (0.4, 0.6), 96)
    >>> e.to_dict()
    {'value': 0.5, 'ci95': [0.4, 0.6], 'n': 96}
    >>> e.covers(0.0)
    False
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["Estimate"]


def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate `value`, its 95% interval `ci95 = (lo, hi)` and the count `n` it rests on
    (images, mini-batches, probes, batches: the unit the interval resamples)."""

    value: float
    ci95: tuple[float, float]
    n: int

    def covers(self, x: float) -> bool:
        """True when `x` lies in the closed interval."""
        lo, hi = self.ci95
        return lo <= x <= hi

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.ci95
        return {"value": _finite_or_none(self.value), "ci95": [_finite_or_none(lo), _finite_or_none(hi)],
                "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Estimate":
        nan = float("nan")
        lo, hi = d["ci95"]
        return cls(nan if d["value"] is None else float(d["value"]),
                   (nan if lo is None else float(lo), nan if hi is None else float(hi)), int(d["n"]))

    def __format__(self, spec: str) -> str:
        spec = spec or ".4g"
        lo, hi = self.ci95
        return f"{self.value:{spec}} [{lo:{spec}}, {hi:{spec}}]"

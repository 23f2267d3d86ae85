"""Estimates with their 95% interval and the count they rest on (methods: docs/methods.md).

`Estimate` is what every `summary()` holds and what JSON stores as {"value", "ci95", "n"};
`ArrayEstimate` is the same for an array of estimates (per layer, per frequency) resting on one
resampling. The interval methods:

- `wilson_interval(successes, n)`: a proportion (accuracy) over n independent trials;
- `paired_difference(a, b)`: mean(b) - mean(a) over the same units (images), Newcombe's interval
  for paired proportions or a paired bootstrap;
- `bootstrap_interval(per_unit, statistic)`: percentile bootstrap that resamples UNITS (batches,
  mini-batches) with replacement; `bootstrap_difference` applies the same resample indices to two
  models' per-unit arrays and gives the interval of the difference;
- `normal_interval(mean, standard_error, n)`: mean +- z * standard error (Hutchinson traces);
- `verdict(contrast, expected_sign)`: "supported" / "not supported" / "inconclusive".

Every bootstrap draws from ``numpy.random.default_rng(seed)`` with a fixed default seed, so the
same inputs give the same digits on every run.

Example:
    >>> e = Estimate(0.5, (0.4, 0.6), 96)
    >>> e.to_dict()
    {'value': 0.5, 'ci95': [0.4, 0.6], 'n': 96}
    >>> e.covers(0.0)
    False
    >>> verdict(Estimate(-2.0, (-3.0, -1.0), 64), expected_sign=-1)
    'supported'
"""
from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Any, Callable

import numpy as np

__all__ = [
    "Estimate", "ArrayEstimate", "wilson_interval", "paired_difference", "bootstrap_interval",
    "bootstrap_difference", "bootstrap_indices", "normal_interval", "verdict", "VERDICTS",
    "estimates_to_dict",
]

DEFAULT_SEED = 0
VERDICTS = ("supported", "not supported", "inconclusive")
_NAN = float("nan")


def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _nan_to_none(a: np.ndarray) -> Any:
    """Nested lists with NaN/inf as None (JSON has no NaN)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return _finite_or_none(a)
    return [_nan_to_none(x) for x in a]


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


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayEstimate:
    """Estimates of an array statistic from one resampling: `value` of shape S, `ci95` of shape
    S + (2,) (lower, upper), and the count `n` of resampled units.

    Example:
        >>> a = ArrayEstimate(np.array([1.0, 2.0]), np.array([[0.5, 1.5], [1.0, 3.0]]), 8)
        >>> a[1]
        Estimate(value=2.0, ci95=(1.0, 3.0), n=8)
        >>> a.to_dict()
        {'value': [1.0, 2.0], 'ci95': [[0.5, 1.5], [1.0, 3.0]], 'n': 8}
    """

    value: np.ndarray
    ci95: np.ndarray
    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.value))

    def __getitem__(self, index: Any) -> "Estimate | ArrayEstimate":
        value = np.asarray(self.value)[index]
        ci = np.asarray(self.ci95)[index]
        if np.ndim(value) == 0:
            return Estimate(float(value), (float(ci[0]), float(ci[1])), int(self.n))
        return ArrayEstimate(value, ci, self.n)

    def to_dict(self) -> dict[str, Any]:
        return {"value": _nan_to_none(self.value), "ci95": _nan_to_none(self.ci95), "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArrayEstimate":
        def arr(x: Any) -> np.ndarray:
            return np.array(x, dtype=object).astype(np.float64)  # None -> nan
        return cls(arr(d["value"]), arr(d["ci95"]), int(d["n"]))


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _wilson_bounds(successes: float, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denom
    # max/min only repair rounding: the exact bounds lie in [0, 1] and bracket p
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def wilson_interval(successes: int, n: int, level: float = 0.95, *, scale: float = 1.0) -> Estimate:
    """Wilson score interval of the proportion `successes / n`, in units of `scale`
    (``scale=100`` gives percent, as the accuracy APIs report).

    Example:
        >>> e = wilson_interval(80, 100, scale=100)
        >>> e.value, e.n
        (80.0, 100)
        >>> f"{e:.2f}"
        '80.00 [71.12, 86.66]'
    """
    if isinstance(successes, bool) or not float(successes).is_integer():
        raise TypeError(f"successes must be a whole count, got {successes!r}")
    if isinstance(n, bool) or not float(n).is_integer() or n < 1:
        raise ValueError(f"n must be a positive whole count, got {n!r}")
    successes, n = int(successes), int(n)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    lo, hi = _wilson_bounds(successes, n, _z(level))
    return Estimate(scale * successes / n, (scale * lo, scale * hi), n)


def _paired_arrays(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D arrays of the same length (paired per unit), "
                         f"got shapes {a.shape} and {b.shape}")
    if a.size < 1:
        raise ValueError("a and b must hold at least one unit")
    return a.astype(np.float64), b.astype(np.float64)


def paired_difference(a: Any, b: Any, *, method: str = "newcombe", seed: int = DEFAULT_SEED,
                      num_resamples: int = 2000, level: float = 0.95, scale: float = 1.0) -> Estimate:
    """Interval of mean(b) - mean(a) where a[i] and b[i] are measured on the same unit i (e.g. one
    test image clean and noisy): ΔAcc = acc(b) - acc(a), in units of `scale` (100 for percent).

    method="newcombe": Newcombe's (1998, method 10) hybrid score interval for paired proportions;
    a and b must be 0/1 (bool). method="bootstrap": paired percentile bootstrap over units (any
    real values), `num_resamples` resamples from ``default_rng(seed)``.

    Example:
        >>> a = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 0], bool)
        >>> b = np.array([1, 0, 1, 0, 0, 0, 1, 1, 0, 0], bool)
        >>> e = paired_difference(a, b, scale=100)
        >>> e.value, e.n
        (-30.0, 10)
        >>> f"{e:.1f}", verdict(e, expected_sign=-1)
        ('-30.0 [-55.1, 4.7]', 'inconclusive')
    """
    a, b = _paired_arrays(a, b)
    n = a.size
    diff_sum = float(b.sum() - a.sum())  # one division: 0/1 outcomes give exact percents
    if method == "newcombe":
        if not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
            raise ValueError("method='newcombe' needs 0/1 outcomes in a and b; "
                             "use method='bootstrap' for real values")
        lo, hi = _newcombe_paired(a.astype(bool), b.astype(bool), _z(level))
    elif method == "bootstrap":
        idx = bootstrap_indices(n, num_resamples, seed)
        d = b - a
        reps = _resampled_means(d[:, None], idx)[:, 0]
        lo, hi = (float(q) for q in _percentile(reps, level))
    else:
        raise ValueError(f"method must be 'newcombe' or 'bootstrap', got {method!r}")
    return Estimate(scale * diff_sum / n, (scale * lo, scale * hi), n)


def _newcombe_paired(a: np.ndarray, b: np.ndarray, z: float) -> tuple[float, float]:
    """Newcombe (1998) method 10 for θ = p_b - p_a on paired 0/1 outcomes."""
    n = a.size
    n11 = int(np.sum(a & b))
    n10 = int(np.sum(a & ~b))
    n01 = int(np.sum(~a & b))
    n00 = n - n11 - n10 - n01
    pa, pb = (n11 + n10) / n, (n11 + n01) / n
    la, ua = _wilson_bounds(n11 + n10, n, z)
    lb, ub = _wilson_bounds(n11 + n01, n, z)
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    # Newcombe's φ: the correlation of the pair with the numerator shrunk by n/2 when positive
    # (0 in between), as in his paper and Altman et al., "Statistics with confidence", §6
    cross = n11 * n00 - n10 * n01
    shrunk = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = shrunk / math.sqrt(margins) if margins > 0 else 0.0
    d = pb - pa
    lower = d - math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    upper = d + math.sqrt(max(0.0, (ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2))
    return max(-1.0, lower), min(1.0, upper)


def bootstrap_indices(num_units: int, num_resamples: int = 1000, seed: int = DEFAULT_SEED) -> np.ndarray:
    """The resample index matrix (num_resamples, num_units) of units drawn with replacement from
    ``default_rng(seed)``: the same for the same arguments on every machine.

    Example:
        >>> bootstrap_indices(4, 3, seed=0).shape
        (3, 4)
    """
    if num_units < 1:
        raise ValueError(f"num_units must be >= 1, got {num_units}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    return np.random.default_rng(seed).integers(0, num_units, size=(num_resamples, num_units))


def _counts(idx: np.ndarray) -> np.ndarray:
    """(R, n) multiplicities of each unit in each resample."""
    r, n = idx.shape
    flat = (idx + n * np.arange(r)[:, None]).ravel()
    return np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.float64)


def _resampled_means(x: np.ndarray, idx: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per resample, the (weighted) mean over units of x (n, F): (R, F)."""
    c = _counts(idx)
    if weights is None:
        return (c @ x) / idx.shape[1]
    return (c @ (weights[:, None] * x)) / (c @ weights)[:, None]


def _percentile(reps: np.ndarray, level: float) -> tuple[Any, Any]:
    _z(level)  # validates level
    q = np.quantile(reps, [0.5 - level / 2.0, 0.5 + level / 2.0], axis=0)
    return q[0], q[1]


def _validate_units(per_unit: Any, name: str = "per_unit") -> np.ndarray:
    x = np.asarray(per_unit, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must be an array (n_units, ...) with n_units >= 1, got shape {x.shape}")
    return x


def _validate_weights(weights: Any, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be {n} finite non-negative numbers (one per unit) with a "
                         f"positive sum, got shape {w.shape}")
    return w


def _replicates(x: np.ndarray, statistic: Callable | None, pooled: bool, weights: np.ndarray | None,
                idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(point value of shape S, replicates (R,) + S) of the statistic on units x (n, ...)."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if statistic is None:
        ones = np.arange(n)[None]
        point = _resampled_means(flat, ones, weights)[0].reshape(x.shape[1:])
        reps = _resampled_means(flat, idx, weights).reshape((idx.shape[0],) + x.shape[1:])
        return point, reps
    if pooled:
        w = np.ones(n) if weights is None else weights
        totals = (_counts(idx) * w) @ flat
        reps = np.asarray(statistic(totals.reshape((idx.shape[0],) + x.shape[1:])), dtype=np.float64)
        point = np.asarray(statistic((w @ flat).reshape((1,) + x.shape[1:])), dtype=np.float64)
        if reps.shape[:1] != (idx.shape[0],) or point.shape[:1] != (1,):
            raise ValueError("a pooled statistic must map totals (R, ...) to an array (R, ...)")
        return point[0], reps
    if weights is not None:
        raise ValueError("weights apply to the default mean and to pooled statistics only")
    point = np.asarray(statistic(x), dtype=np.float64)
    reps = np.stack([np.asarray(statistic(x[i]), dtype=np.float64) for i in idx])
    return point, reps


def _estimate(point: np.ndarray, lo: Any, hi: Any, n: int) -> Estimate | ArrayEstimate:
    if np.ndim(point) == 0:
        return Estimate(float(point), (float(lo), float(hi)), n)
    return ArrayEstimate(np.asarray(point), np.stack([lo, hi], axis=-1), n)


def _too_few(point: np.ndarray, n: int) -> Estimate | ArrayEstimate:
    nan = np.full(np.shape(point), _NAN)
    return _estimate(point, nan, nan, n)


def bootstrap_interval(per_unit: Any, statistic: Callable[[np.ndarray], Any] | None = None, *,
                       seed: int = DEFAULT_SEED, num_resamples: int = 1000, weights: Any = None,
                       pooled: bool = False, level: float = 0.95, min_units: int = 2) -> Estimate | ArrayEstimate:
    """Percentile bootstrap over UNITS: resample the rows of `per_unit` (n_units, ...) with
    replacement `num_resamples` times (indices from `bootstrap_indices(n_units, num_resamples, seed)`).

    `statistic`:
      - None: the mean over units (weighted by `weights` (n_units,), e.g. images per batch);
        vectorised, so per_unit may be (n_units, L, K) and an ArrayEstimate of shape (L, K) comes back;
      - with ``pooled=True``: a vectorised function of the pooled TOTALS. It receives
        Σ_i count_i · w_i · per_unit[i] of every resample, shape (R, ...), and returns (R, ...)
        (e.g. ``lambda t: t[:, 0] / np.sqrt(t[:, 1] * t[:, 2])`` for CKA from per-batch HSIC
        triples); the point value is the statistic of the full totals;
      - otherwise: a function of one resample's rows ``per_unit[idx]`` (n_units, ...) returning a
        float or an array (e.g. ``lambda v: np.quantile(v, 0.9)``), called once per resample.

    Returns an Estimate for a scalar statistic, an ArrayEstimate for an array one, with n = n_units.
    With fewer than `min_units` units (at least 2: one unit leaves nothing to resample) the interval
    is NaN; the feature analyses ask for 8 batches, below which a percentile interval is too coarse.

    Example:
        >>> x = np.arange(16.0)
        >>> e = bootstrap_interval(x)
        >>> e.value, e.n, e.ci95[0] < 7.5 < e.ci95[1]
        (7.5, 16, True)
        >>> bootstrap_interval(x) == e  # fixed default seed: the same digits
        True
    """
    x = _validate_units(per_unit)
    n = x.shape[0]
    w = _validate_weights(weights, n)
    idx = bootstrap_indices(n, num_resamples, seed)
    point, reps = _replicates(x, statistic, pooled, w, idx)
    if n < max(2, min_units):
        return _too_few(point, n)
    lo, hi = _percentile(reps, level)
    return _estimate(point, lo, hi, n)


def bootstrap_difference(per_unit_a: Any, per_unit_b: Any, statistic: Callable[[np.ndarray], Any] | None = None,
                         *, paired: bool = True, seed: int = DEFAULT_SEED, num_resamples: int = 1000,
                         weights_a: Any = None, weights_b: Any = None, pooled: bool = False,
                         level: float = 0.95, min_units: int = 2) -> Estimate | ArrayEstimate:
    """Interval of statistic(b) - statistic(a) for two models' per-unit arrays.

    ``paired=True`` (the units are the same test batches, aligned by row): the SAME resample indices
    are applied to both arrays, so what the two models share cancels. ``paired=False`` (different
    units, e.g. each model's own mini-batches): each array is resampled independently (seeds
    `seed` and `seed + 1`). `statistic`, `pooled`, `min_units` and the weights mean what they mean
    in `bootstrap_interval`. n is the number of units (the smaller one when unpaired).

    Example:
        >>> a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
        >>> e = bootstrap_difference(a, a + 1.0)  # paired: the shift is exact
        >>> e.value, e.ci95, e.n
        (1.0, (1.0, 1.0), 8)
    """
    xa = _validate_units(per_unit_a, "per_unit_a")
    xb = _validate_units(per_unit_b, "per_unit_b")
    if xa.shape[1:] != xb.shape[1:]:
        raise ValueError(f"per_unit_a and per_unit_b must have the same trailing shape, "
                         f"got {xa.shape} and {xb.shape}")
    na, nb = xa.shape[0], xb.shape[0]
    wa, wb = _validate_weights(weights_a, na), _validate_weights(weights_b, nb)
    if paired:
        if na != nb:
            raise ValueError(f"paired=True needs the same units for both (aligned rows), got {na} and "
                             f"{nb} units; pass paired=False for independent resampling")
        idx_a = idx_b = bootstrap_indices(na, num_resamples, seed)
    else:
        idx_a = bootstrap_indices(na, num_resamples, seed)
        idx_b = bootstrap_indices(nb, num_resamples, seed + 1)
    pa, ra = _replicates(xa, statistic, pooled, wa, idx_a)
    pb, rb = _replicates(xb, statistic, pooled, wb, idx_b)
    n = min(na, nb)
    point = pb - pa
    if n < max(2, min_units):
        return _too_few(point, n)
    lo, hi = _percentile(rb - ra, level)
    return _estimate(point, lo, hi, n)


def normal_interval(mean: float, standard_error: float, n: int, level: float = 0.95) -> Estimate:
    """mean +- z * standard_error (z = 1.96 at 95%), e.g. a Hutchinson trace from n probes.

    Example:
        >>> f"{normal_interval(10.0, 1.0, 30):.3f}"
        '10.000 [8.040, 11.960]'
    """
    se = float(standard_error)
    if not se >= 0.0 and not math.isnan(se):
        raise ValueError(f"standard_error must be >= 0, got {standard_error!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    half = _z(level) * se
    mean = float(mean)
    return Estimate(mean, (mean - half, mean + half), int(n))


def verdict(contrast: Estimate, expected_sign: int) -> str:
    """"supported" when the interval excludes 0 on the `expected_sign` side (+1 or -1),
    "not supported" when it excludes 0 on the other side, "inconclusive" when it covers 0 or is
    not finite.

    Example:
        >>> verdict(Estimate(0.3, (-0.1, 0.7), 64), +1)
        'inconclusive'
        >>> verdict(Estimate(0.3, (0.1, 0.7), 64), -1)
        'not supported'
    """
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    lo, hi = (float(v) for v in contrast.ci95)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0.0 <= hi:
        return "inconclusive"
    sign = 1 if lo > 0.0 else -1
    return "supported" if sign == expected_sign else "not supported"


def estimates_to_dict(summary: dict[str, Estimate | ArrayEstimate]) -> dict[str, Any]:
    """{name: estimate.to_dict()} for a summary() mapping (the JSON "summary" block).

    Example:
        >>> estimates_to_dict({"acc": Estimate(1.0, (0.5, 1.0), 4)})
        {'acc': {'value': 1.0, 'ci95': [0.5, 1.0], 'n': 4}}
    """
    return {k: v.to_dict() for k, v in summary.items()}



"""docs/methods.md §5 interval methods: the vectorised bootstrap (one index matrix, a counts @ values product)
against the per-resample Python loop it replaces, on the same input in the same run.

Run: PYTHONPATH=$PWD python -m pytest bench/bench_intervals.py --benchmark-only -q
"""
from __future__ import annotations

import numpy as np
import pytest

from fastvit_analysis.common.intervals import bootstrap_indices, bootstrap_interval, paired_difference

ROUNDS = dict(rounds=20, iterations=1, warmup_rounds=2)
R = 1000

CASES = {
    "scalar n=64": (64,),
    "per latent x frequency (64,25,16)": (64, 25, 16),
}


def _loop(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The direct way: one weighted mean per resample in Python, then percentiles."""
    reps = np.stack([np.tensordot(w[i], x[i], axes=1) / w[i].sum() for i in bootstrap_indices(len(x), R, 0)])
    return tuple(np.quantile(reps, [0.025, 0.975], axis=0))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", ["vectorised", "loop"])
def test_bootstrap_over_batches(benchmark, case, impl):
    rng = np.random.default_rng(0)
    x = rng.normal(size=CASES[case])
    w = rng.integers(8, 33, size=x.shape[0]).astype(float)
    benchmark.group = f"bootstrap_interval {case}, {R} resamples"
    if impl == "loop":
        benchmark.extra_info["reference"] = True
        benchmark.pedantic(_loop, args=(x, w), **ROUNDS)
    else:
        benchmark.pedantic(bootstrap_interval, args=(x,), kwargs=dict(weights=w, num_resamples=R), **ROUNDS)


@pytest.mark.parametrize("method", ["newcombe", "bootstrap"])
def test_paired_difference_2000_images(benchmark, method):
    rng = np.random.default_rng(0)
    a, b = rng.random(2000) < 0.8, rng.random(2000) < 0.7
    benchmark.group = "paired_difference 2000 images"
    if method == "newcombe":
        benchmark.extra_info["reference"] = True
    benchmark.pedantic(paired_difference, args=(a, b), kwargs=dict(method=method), **ROUNDS)

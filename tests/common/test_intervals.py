"""docs/methods.md §5 interval methods: coverage on simulated data with a known answer (>= 90% of 200 seeds
cover the truth at 95%), exact values against direct formulas, determinism, bad input."""
import json
import math
import time

import numpy as np
import pytest
from scipy import stats

from fastvit_analysis.common.intervals import (
    ArrayEstimate,
    Estimate,
    bootstrap_difference,
    bootstrap_indices,
    bootstrap_interval,
    estimates_to_dict,
    normal_interval,
    paired_difference,
    verdict,
    wilson_interval,
)

SEEDS = range(200)


def _coverage(make_estimate, truth):
    hits = [make_estimate(np.random.default_rng(1000 + s)).covers(truth) for s in SEEDS]
    return float(np.mean(hits))


# --- Wilson ---------------------------------------------------------------------------------

@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (80, 100), (100, 100), (517, 2000)])
def test_wilson_matches_scipy(k, n):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    e = wilson_interval(k, n)
    assert e.value == k / n and e.n == n
    assert e.ci95 == pytest.approx((ref.low, ref.high), abs=1e-12)
    pct = wilson_interval(k, n, scale=100)
    assert pct.ci95 == pytest.approx((100 * ref.low, 100 * ref.high), abs=1e-10)


def test_wilson_coverage():
    p, n = 0.3, 200
    cov = _coverage(lambda rng: wilson_interval(int(rng.binomial(n, p)), n), p)
    assert cov >= 0.90, cov


def test_wilson_bad_input():
    with pytest.raises(ValueError, match="n must be"):
        wilson_interval(1, 0)
    with pytest.raises(ValueError, match="successes must be in"):
        wilson_interval(11, 10)
    with pytest.raises(TypeError, match="successes must be a whole count"):
        wilson_interval(2.5, 10)
    with pytest.raises(ValueError, match="level"):
        wilson_interval(2, 10, level=95)


# --- paired difference ---------------------------------------------------------------------

def _correlated_pairs(rng, n, pa=0.8, pb=0.65):
    """Clean (a) and noisy (b) correctness of the same images: b is mostly a, flips some."""
    a = rng.random(n) < pa
    # P(b=1 | a=1) = q1, P(b=1 | a=0) = q0 with q1 * pa + q0 * (1 - pa) = pb
    q0 = 0.25
    q1 = (pb - q0 * (1 - pa)) / pa
    u = rng.random(n)
    b = np.where(a, u < q1, u < q0)
    return a, b


@pytest.mark.parametrize("method", ["newcombe", "bootstrap"])
def test_paired_difference_coverage(method):
    n, pa, pb = 300, 0.8, 0.65

    def make(rng):
        a, b = _correlated_pairs(rng, n, pa, pb)
        return paired_difference(a, b, method=method, num_resamples=1000)

    cov = _coverage(make, pb - pa)
    assert cov >= 0.90, cov


def test_paired_difference_value_and_symmetry():
    rng = np.random.default_rng(3)
    a, b = _correlated_pairs(rng, 500)
    e = paired_difference(a, b, scale=100)
    assert e.value == pytest.approx(100 * (b.mean() - a.mean()), abs=1e-12) and e.n == 500
    r = paired_difference(b, a, scale=100)
    assert r.value == pytest.approx(-e.value) and r.ci95 == pytest.approx((-e.ci95[1], -e.ci95[0]))
    # pairing: the same images make the interval narrower than treating them as independent
    half_independent = 100 * 1.96 * math.sqrt(a.mean() * (1 - a.mean()) / 500 + b.mean() * (1 - b.mean()) / 500)
    assert e.ci95[1] - e.ci95[0] < 2 * half_independent


def test_paired_difference_no_discordant_pairs():
    a = np.array([1] * 30 + [0] * 10, bool)
    e = paired_difference(a, a.copy())
    assert e.value == 0.0 and e.ci95[0] < 0.0 < e.ci95[1]
    assert verdict(e, -1) == "inconclusive"


def test_paired_difference_bootstrap_is_exact_on_a_shift():
    a = np.random.default_rng(0).normal(size=64)
    e = paired_difference(a, a + 0.5, method="bootstrap")
    assert e.ci95 == pytest.approx((0.5, 0.5), abs=1e-12)


def test_paired_difference_bad_input():
    with pytest.raises(ValueError, match="same length"):
        paired_difference(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="0/1 outcomes"):
        paired_difference(np.array([0.2, 0.4]), np.array([0.1, 0.9]))
    with pytest.raises(ValueError, match="method must be"):
        paired_difference(np.ones(3), np.ones(3), method="wald")


# --- bootstrap over units ------------------------------------------------------------------

def test_bootstrap_mean_coverage():
    cov = _coverage(lambda rng: bootstrap_interval(rng.normal(2.0, 1.0, size=64)), 2.0)
    assert cov >= 0.90, cov


def test_bootstrap_pooled_ratio_coverage():
    # per-batch (sum, count) pieces: the pooled mean over images is a ratio of totals
    def make(rng):
        counts = rng.integers(8, 33, size=32).astype(float)
        sums = np.array([rng.exponential(1.5, size=int(c)).sum() for c in counts])
        return bootstrap_interval(np.stack([sums, counts], 1), lambda t: t[:, 0] / t[:, 1], pooled=True)

    cov = _coverage(make, 1.5)
    assert cov >= 0.90, cov


def test_bootstrap_pooled_and_weighted_mean_agree_with_direct_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 3, 4))
    w = rng.integers(1, 9, size=20).astype(float)
    idx = bootstrap_indices(20, 300, seed=7)
    e = bootstrap_interval(x, weights=w, seed=7, num_resamples=300)
    assert isinstance(e, ArrayEstimate) and e.shape == (3, 4) and e.n == 20
    np.testing.assert_allclose(e.value, (w[:, None, None] * x).sum(0) / w.sum(), rtol=1e-12)
    reps = np.stack([(w[i, None, None] * x[i]).sum(0) / w[i].sum() for i in idx])
    lo, hi = np.quantile(reps, [0.025, 0.975], axis=0)
    np.testing.assert_allclose(e.ci95[..., 0], lo, rtol=1e-10)
    np.testing.assert_allclose(e.ci95[..., 1], hi, rtol=1e-10)
    # the same through a per-resample callable
    f = bootstrap_interval(x[:, 0, 0], lambda v: v.mean(), seed=7, num_resamples=300)
    g = bootstrap_interval(x[:, 0, 0], seed=7, num_resamples=300)
    assert f.value == pytest.approx(g.value) and f.ci95 == pytest.approx(g.ci95, rel=1e-12)


def test_bootstrap_per_resample_statistic_quantile():
    v = np.arange(40.0)
    idx = bootstrap_indices(40, 200, seed=0)
    e = bootstrap_interval(v, lambda s: np.quantile(s, 0.9), num_resamples=200)
    reps = np.quantile(v[idx], 0.9, axis=1)
    assert e.value == np.quantile(v, 0.9)
    assert e.ci95 == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))


def test_bootstrap_is_deterministic_and_seeded():
    x = np.random.default_rng(5).normal(size=64)
    assert bootstrap_interval(x) == bootstrap_interval(x)
    assert bootstrap_interval(x, seed=1) != bootstrap_interval(x)
    assert json.dumps(bootstrap_interval(x).to_dict()) == json.dumps(bootstrap_interval(x).to_dict())


def test_bootstrap_one_unit_gives_nan_interval():
    e = bootstrap_interval(np.array([3.0]))
    assert e.value == 3.0 and e.n == 1 and all(math.isnan(c) for c in e.ci95)
    assert e.to_dict() == {"value": 3.0, "ci95": [None, None], "n": 1}
    assert verdict(e, 1) == "inconclusive"


def test_bootstrap_is_fast():
    x = np.random.default_rng(0).normal(size=(64, 25, 16))
    bootstrap_interval(x)  # warm
    t = time.perf_counter()
    bootstrap_interval(x, num_resamples=1000)
    bootstrap_interval(x[:, 0, 0], num_resamples=1000)
    assert time.perf_counter() - t < 0.2  # two calls, each well under 50 ms when idle


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="per_unit must be"):
        bootstrap_interval(np.array([]))
    with pytest.raises(ValueError, match="weights must be 3"):
        bootstrap_interval(np.ones(3), weights=np.ones(2))
    with pytest.raises(ValueError, match="pooled statistic"):
        bootstrap_interval(np.ones((4, 2)), lambda t: 1.0, pooled=True)


# --- difference between two models ---------------------------------------------------------

def _two_models(rng, n=64, delta=-0.3):
    shared = rng.normal(0.0, 2.0, size=n)  # batch difficulty both models see
    return shared + rng.normal(0, 0.5, size=n), shared + delta + rng.normal(0, 0.5, size=n)


def test_bootstrap_difference_paired_coverage_and_width():
    cov = _coverage(lambda rng: bootstrap_difference(*_two_models(rng)), -0.3)
    assert cov >= 0.90, cov
    a, b = _two_models(np.random.default_rng(0))
    paired = bootstrap_difference(a, b)
    unpaired = bootstrap_difference(a, b, paired=False)
    assert paired.value == pytest.approx(b.mean() - a.mean()) == unpaired.value
    assert paired.ci95[1] - paired.ci95[0] < 0.5 * (unpaired.ci95[1] - unpaired.ci95[0])


def test_bootstrap_difference_unpaired_coverage():
    def make(rng):
        return bootstrap_difference(rng.normal(0, 1, 40), rng.normal(0.5, 1, 56), paired=False)

    cov = _coverage(make, 0.5)
    assert cov >= 0.90, cov


def test_bootstrap_difference_pooled_arrays():
    # CKA-like ratio of totals per model on the same batches, per layer pair
    rng = np.random.default_rng(2)
    ta, tb = rng.uniform(1, 2, size=(16, 3)), rng.uniform(1, 2, size=(16, 3))

    def ratio(t):
        return t[:, 0] / np.sqrt(t[:, 1] * t[:, 2])

    e = bootstrap_difference(ta, tb, ratio, pooled=True)
    sa, sb = ta.sum(0), tb.sum(0)
    assert e.value == pytest.approx(sb[0] / math.sqrt(sb[1] * sb[2]) - sa[0] / math.sqrt(sa[1] * sa[2]))
    assert e.ci95[0] <= e.value <= e.ci95[1]


def test_bootstrap_difference_bad_input():
    with pytest.raises(ValueError, match="paired=True needs the same units"):
        bootstrap_difference(np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match="same trailing shape"):
        bootstrap_difference(np.ones((4, 2)), np.ones((4, 3)))


# --- normal interval, verdict, JSON --------------------------------------------------------

def test_normal_interval_coverage_and_formula():
    def make(rng):
        x = rng.normal(5.0, 2.0, size=30)
        return normal_interval(x.mean(), x.std(ddof=1) / math.sqrt(30), 30)

    assert _coverage(make, 5.0) >= 0.90
    e = normal_interval(1.0, 0.5, 10, level=0.9)
    z = stats.norm.ppf(0.95)
    assert e.ci95 == pytest.approx((1.0 - 0.5 * z, 1.0 + 0.5 * z), abs=1e-12)
    with pytest.raises(ValueError, match="standard_error"):
        normal_interval(1.0, -1.0, 3)


@pytest.mark.parametrize("ci,sign,expected", [
    ((0.1, 0.4), 1, "supported"), ((0.1, 0.4), -1, "not supported"),
    ((-0.4, -0.1), -1, "supported"), ((-0.4, -0.1), 1, "not supported"),
    ((-0.1, 0.4), 1, "inconclusive"), ((0.0, 0.4), 1, "inconclusive"),
    ((float("nan"), float("nan")), 1, "inconclusive")])
def test_verdict(ci, sign, expected):
    assert verdict(Estimate(0.2, ci, 10), sign) == expected


def test_verdict_bad_sign():
    with pytest.raises(ValueError, match="expected_sign"):
        verdict(Estimate(0.2, (0.1, 0.3), 10), 0)


def test_array_estimate_json_roundtrip():
    a = ArrayEstimate(np.array([[1.0, np.nan]]), np.array([[[0.0, 2.0], [np.nan, np.nan]]]), 9)
    d = json.loads(json.dumps(estimates_to_dict({"x": a, "y": Estimate(1.0, (0.0, 2.0), 3)})))
    assert d["x"] == {"value": [[1.0, None]], "ci95": [[[0.0, 2.0], [None, None]]], "n": 9}
    back = ArrayEstimate.from_dict(d["x"])
    np.testing.assert_array_equal(back.value, a.value)
    np.testing.assert_array_equal(back.ci95, a.ci95)
    assert back[0, 0] == Estimate(1.0, (0.0, 2.0), 9)

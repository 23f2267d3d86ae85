"""docs/methods.md §5 intervals of the curvature and landscape results, each checked against a direct formula
(an explicit loop over the same bootstrap resamples, a dense Hessian, a per-batch reference pass)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from fastvit_analysis import hessian_density, hessian_spectrum, hessian_trace, loss_landscape
from fastvit_analysis.common.intervals import bootstrap_indices, wilson_interval
from fastvit_analysis.curvature.density import HessianDensityResult
from fastvit_analysis.curvature.hutchpp import hutchinson
from fastvit_analysis.curvature.max_eigen import MaxEigenvalueSpectrumResult

from .cases import batch, dense_hessian, mlp

CE = nn.CrossEntropyLoss()


def _percentile(reps):
    return tuple(np.quantile(np.asarray(reps), [0.025, 0.975], axis=0))


def _spectrum(values: np.ndarray) -> MaxEigenvalueSpectrumResult:
    v = torch.as_tensor(values, dtype=torch.float64)
    return MaxEigenvalueSpectrumResult(v, torch.zeros_like(v), torch.ones_like(v, dtype=torch.bool),
                                 float((v < 0).double().mean()), float(v[v > 0].mean()), 16, "LM", 0)


# ----------------------------------------------------------------------------- max-eigenvalue spectrum
def test_max_eigen_summary_resamples_mini_batches_not_values():
    rng = np.random.default_rng(3)
    values = rng.normal(0.5, 1.0, size=(24, 5))
    s = _spectrum(values).summary(num_resamples=300, seed=7)
    pooled = values.reshape(-1)
    assert s["negative_fraction"].value == pytest.approx((pooled < 0).mean())
    assert s["positive_mean"].value == pytest.approx(pooled[pooled > 0].mean())
    assert s["quantile_0.5"].value == pytest.approx(np.quantile(pooled, 0.5))
    assert {e.n for e in s.values()} == {24}
    # the same interval by an explicit loop: each resample takes whole rows (mini-batches)
    idx = bootstrap_indices(24, 300, seed=7)
    neg = [(values[i] < 0).mean() for i in idx]
    pos = [values[i][values[i] > 0].mean() for i in idx]
    q95 = [np.quantile(values[i].reshape(-1), 0.95) for i in idx]
    assert s["negative_fraction"].ci95 == pytest.approx(_percentile(neg))
    assert s["positive_mean"].ci95 == pytest.approx(_percentile(pos))
    assert s["quantile_0.95"].ci95 == pytest.approx(_percentile(q95))


def test_max_eigen_negative_fraction_coverage_with_correlated_mini_batches():
    # a mini-batch's 5 values share its sign (the truth is 0.3): resampling values would be far too
    # narrow; resampling mini-batches covers the truth at about the nominal rate
    covered = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        sign = np.where(rng.random(40) < 0.3, -1.0, 1.0)
        values = sign[:, None] * rng.uniform(0.1, 2.0, size=(40, 5))
        covered += _spectrum(values).summary(quantiles=(), num_resamples=400)["negative_fraction"].covers(0.3)
    assert covered >= 180, covered


def test_max_eigen_to_dict_has_summary_json():
    d = _spectrum(np.array([[2.0, -1.0], [3.0, 1.0], [1.0, 1.0]])).to_dict()
    json.dumps(d)
    assert set(d["summary"]["negative_fraction"]) == {"value", "ci95", "n"}
    assert d["summary"]["negative_fraction"]["n"] == 3


# ----------------------------------------------------------------------------------------- trace
def test_trace_summary_is_the_normal_interval_of_hutchinson():
    res = hessian_trace(mlp(), CE, batch("mlp"), num_probes=12, method="hutchinson", progress=False)
    e = res.summary()["trace"]
    assert e.n == 12 and e.value == res.value
    assert e.ci95 == pytest.approx((res.value - 1.959964 * res.stderr, res.value + 1.959964 * res.stderr))
    assert res.to_dict()["summary"]["trace"]["n"] == 12


class _DenseOperator:
    """A symmetric matrix as the operator protocol the solvers take (matmat, shape, dtype, device)."""

    def __init__(self, A: torch.Tensor):
        self.A, self.shape, self.dtype, self.device = A, tuple(A.shape), A.dtype, A.device

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return V @ self.A


def test_hutchinson_normal_interval_coverage():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    A = torch.as_tensor(Q @ np.diag(rng.normal(1.0, 2.0, 30)) @ Q.T)
    exact = float(A.trace())
    from fastvit_analysis.curvature.trace import HessianTraceResult
    covered = 0
    for seed in range(200):
        value, se, n = hutchinson(_DenseOperator(A), 40, generator=torch.Generator().manual_seed(seed))
        covered += HessianTraceResult(value, se, n, n, "hutchinson", 30).summary()["trace"].covers(exact)
    assert covered >= 180, covered


# --------------------------------------------------------------------------------------- density
def test_density_band_and_summary_against_per_probe_formulas():
    res = hessian_density(mlp(), CE, batch("mlp"), num_probes=6, steps=12, progress=False)
    grid = torch.linspace(-1, 2, 50, dtype=torch.float64)
    band = res.density_band(grid, sigma=0.1, num_resamples=200)
    assert band.n == 6
    np.testing.assert_allclose(band.value, res.density(grid, sigma=0.1).numpy(), rtol=1e-12)
    per_probe = res.probe_densities(grid, sigma=0.1).numpy()
    reps = np.stack([per_probe[i].mean(0) for i in bootstrap_indices(6, 200)])
    np.testing.assert_allclose(band.ci95, np.stack(_percentile(reps), axis=-1), rtol=1e-12)
    assert np.all(band.ci95[:, 0] <= band.value + 1e-15) and np.all(band.value <= band.ci95[:, 1] + 1e-15)
    s = res.summary()
    w, th = res.weights.double().numpy(), res.nodes.double().numpy()
    assert s["negative_mass"].value == pytest.approx(((th < 0) * w).sum(1).mean())
    assert s["mean"].value == pytest.approx(res.moments()[0])


def test_density_negative_mass_is_the_dense_negative_eigenvalue_fraction_with_full_quadrature():
    # with steps = P every probe's quadrature is exact: E over Rademacher probes of the mass below 0
    # is (#eigenvalues < 0)/P, and a probe's mass is exactly vᵀ1{H<0}v/‖v‖²
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    torch.manual_seed(0)
    data = (torch.randn(16, 3, dtype=torch.float64), torch.randint(3, (16,)))
    # weight decay lifts the null space (eigenvalue 0, whose sign rounding would decide) to +0.01
    H = dense_hessian(model, CE, [data], weight_decay=0.01)
    evals, evecs = torch.linalg.eigh(H)
    assert (evals < 0).any() and evals.abs().min() > 1e-4
    P = H.shape[0]
    res = hessian_density(model, CE, data, num_probes=4, steps=P, weight_decay=0.01, progress=False, seed=1)
    from fastvit_analysis.curvature.krylov import make_generator, rademacher
    v = rademacher((4, P), dtype=torch.float64, device=torch.device("cpu"), generator=make_generator(1, "cpu"))
    proj = (v @ evecs[:, evals < 0]) ** 2
    direct = (proj.sum(1) / (v ** 2).sum(1)).mean()
    assert res.summary()["negative_mass"].value == pytest.approx(float(direct), abs=1e-6)


def test_density_single_probe_has_nan_interval():
    r = HessianDensityResult(torch.tensor([[-1.0, 2.0]]), torch.tensor([[0.5, 0.5]]), 2, 10)
    e = r.summary()["negative_mass"]
    assert e.value == 0.5 and e.n == 1 and all(np.isnan(e.ci95))


# -------------------------------------------------------------------------------------- spectrum
def test_spectrum_interval_is_a_certified_bound_holding_a_dense_eigenvalue():
    model = mlp()
    data = batch("mlp")
    evals = torch.linalg.eigvalsh(dense_hessian(model, CE, [data])).numpy()
    # a loose tolerance and a small budget leave visible residuals
    res = hessian_spectrum(model, CE, data, top_k=3, tol=1e-1, max_hvp=12, progress=False)
    s = res.summary()
    assert len(s) == 3
    for i, e in enumerate(s.values()):
        assert e.n == res.num_hvp
        assert e.ci95[1] - e.ci95[0] == pytest.approx(2 * float(res.residuals[i]))
        assert np.any((evals >= e.ci95[0] - 1e-9) & (evals <= e.ci95[1] + 1e-9)), (e, evals[-5:])


# ------------------------------------------------------------------------------------- landscape
def _landscape_setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    data = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 36, 4)] + [(x[36:39], y[36:39])]   # 10 batches
    return model, data


def test_landscape_records_per_batch_losses_and_summary_matches_direct_formulas():
    model, data = _landscape_setup()
    res = loss_landscape(model, CE, data, steps=5, l2_coef=0.05, progress=False)
    sizes = [len(x) for x, _ in data]
    assert res.batch_sizes == sizes
    assert res.batch_loss_sum.shape == (5, 5, len(data))
    np.testing.assert_allclose(res.batch_loss_sum.sum(-1) / sum(sizes), res.nll, rtol=1e-10)
    # the centre is θ* itself: per-batch sums equal a plain forward pass per batch
    with torch.no_grad():
        direct = [CE(model(x), y).item() * len(x) for x, y in data]
        correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in data)
    np.testing.assert_allclose(res.batch_loss_sum[2, 2], direct, rtol=1e-5)
    assert res.batch_correct[2, 2].sum() == correct

    s = res.summary(num_resamples=300)
    mask = np.zeros((5, 5), bool)
    mask[[0, -1], :] = mask[:, [0, -1]] = True
    assert s["border_rise"].value == pytest.approx(res.loss[mask].mean() - res.loss[2, 2], rel=1e-9)
    assert s["border_rise"].n == len(data)
    # explicit loop over the same resamples of data batches (the loss is a sample-weighted mean)
    reps = []
    for idx in bootstrap_indices(len(data), 300):
        n = np.asarray(sizes, float)[idx].sum()
        nll = res.batch_loss_sum[..., idx].sum(-1) / n
        loss = nll + 0.05 * res.l2_norm
        reps.append(loss[mask].mean() - loss[2, 2])
    assert s["border_rise"].ci95 == pytest.approx(_percentile(reps), rel=1e-9)
    assert s["centre_accuracy"] == wilson_interval(correct, sum(sizes), scale=100.0)
    assert s["centre_loss"].value == pytest.approx(res.loss[2, 2])
    d = res.to_dict()
    json.dumps(d)
    assert d["summary"]["border_rise"]["n"] == len(data)


def test_landscape_1d_border_is_the_two_ends():
    model, data = _landscape_setup()
    res = loss_landscape(model, CE, data, steps=5, dims=1, progress=False)
    s = res.summary(num_resamples=100)
    assert s["border_rise"].value == pytest.approx(0.5 * (res.loss[0] + res.loss[-1]) - res.loss[2])


def test_landscape_without_per_batch_data_reports_a_nan_interval():
    a = np.linspace(-1, 1, 3)
    z = np.add.outer(a ** 2, a ** 2)
    from fastvit_analysis.landscape.grid import LandscapeResult
    r = LandscapeResult([a, a], z, z, np.full_like(z, np.nan), np.zeros_like(z))
    e = r.summary()["border_rise"]
    assert e.value == pytest.approx(1.5) and all(np.isnan(e.ci95))
    assert "centre_accuracy" not in r.summary()


# ----------------------------------------------------------------------------------------- figures
def _band_polygons(ax):
    from matplotlib.collections import PolyCollection

    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_max_eigen_plot_shades_the_mini_batch_band_matching_a_direct_loop():
    import matplotlib
    matplotlib.use("Agg")
    from fastvit_analysis.plot.curvature import histogram_band

    rng = np.random.default_rng(0)
    values = rng.normal(0.3, 1.0, size=(20, 5))
    res = _spectrum(values)
    fig, (neg, pos) = res.plot(bins=6)
    assert len(_band_polygons(neg)) == 1 and len(_band_polygons(pos)) == 1
    assert "fraction" in neg.get_title() and "[" in neg.get_title()
    edges = np.histogram(values[values > 0], bins=6)[1]
    band = histogram_band(values, edges, num_resamples=200)
    reps = []
    for idx in bootstrap_indices(20, 200):
        v = values[idx].reshape(-1)
        reps.append(np.histogram(v, bins=edges)[0] / (v.size * np.diff(edges)))
    np.testing.assert_allclose(band.ci95, np.stack(_percentile(reps), axis=-1), rtol=1e-12)
    pooled = values.reshape(-1)
    np.testing.assert_allclose(band.value, np.histogram(pooled, bins=edges)[0] / (pooled.size * np.diff(edges)))


def test_density_and_landscape_curve_plots_draw_bands(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from fastvit_analysis.plot.landscape import border_rise as plot_border_rise
    from fastvit_analysis.plot.landscape import curve as plot_curve

    res = hessian_density(mlp(), CE, batch("mlp"), num_probes=3, steps=8, progress=False)
    fig, ax = res.plot()
    assert len(_band_polygons(ax)) == 1
    model, data = _landscape_setup()
    line = loss_landscape(model, CE, data, steps=5, dims=1, progress=False)
    band = line.loss_band()            # what plot_curve draws
    assert band.n == 10 and band.ci95.shape == (5, 2)
    np.testing.assert_allclose(band.value, line.loss, rtol=1e-12)
    fig = plot_curve(line)
    (poly,) = _band_polygons(fig.axes[0])
    ys = poly.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(band.ci95[..., 0].min()) and ys.max() == pytest.approx(band.ci95[..., 1].max())
    grid = loss_landscape(model, CE, data, steps=3, progress=False)
    fig = plot_border_rise({"a": grid, "b": grid})
    fig.savefig(tmp_path / "rise.png")
    e = grid.summary()["border_rise"]
    (bar_errors,) = [c for c in fig.axes[0].collections]
    segs = bar_errors.get_segments()
    assert segs[0][:, 1] == pytest.approx(list(e.ci95))

"""hessian_trace within 3 standard errors of the exact trace; SLQ density vs the dense spectrum."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastvit_analysis import hessian_density, hessian_trace

from .cases import batch, mlp, reference

CE = nn.CrossEntropyLoss()


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_within_three_standard_errors(method):
    H, _ = reference("mlp")
    exact = float(H.trace())
    res = hessian_trace(mlp(), CE, batch("mlp"), num_probes=60, method=method, progress=False)
    assert res.stderr > 0
    assert abs(res.value - exact) <= 3 * res.stderr, (res.value, exact, res.stderr)
    assert res.num_hvp == 60
    assert res.to_dict()["method"] == method


def test_hutch_plus_plus_is_exact_when_the_sketch_spans_the_range():
    # rank-deficient linear model: 9 parameters, Hessian rank <= 6; 3 * 8 probes: the sketch spans it
    model = nn.Linear(2, 3).double()
    data = (torch.randn(8, 2, dtype=torch.float64), torch.randint(3, (8,)))
    from .cases import dense_hessian
    exact = float(dense_hessian(model, CE, [data]).trace())
    res = hessian_trace(model, CE, data, num_probes=24, method="hutch++", progress=False)
    assert abs(res.value - exact) < 1e-10
    assert res.stderr < 1e-10


def test_trace_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        hessian_trace(mlp(), CE, batch("mlp"), method="exact", progress=False)
    with pytest.raises(ValueError, match="num_probes"):
        hessian_trace(mlp(), CE, batch("mlp"), num_probes=2, method="hutch++", progress=False)


def test_density_integrates_to_one_and_matches_dense_mean_and_variance():
    _, eigs = reference("mlp")
    res = hessian_density(mlp(), CE, batch("mlp"), num_probes=40, steps=30, progress=False)
    assert res.nodes.shape == (40, 30) and res.weights.shape == (40, 30)
    assert torch.allclose(res.weights.sum(-1), torch.ones(40, dtype=torch.float64), atol=1e-10)
    lo, hi = float(eigs.min()), float(eigs.max())
    span = hi - lo
    grid = torch.linspace(lo - span, hi + span, 4000, dtype=torch.float64)
    assert abs(float(torch.trapezoid(res.density(grid, sigma=0.02 * span), grid)) - 1) < 1e-6
    mean, var = res.moments()
    true_mean, true_second = float(eigs.mean()), float((eigs ** 2).mean())
    true_var = true_second - true_mean ** 2
    # per probe the quadrature gives vᵀHv and vᵀH²v exactly (30 steps > degree 2): unbiased estimates
    # of the spectrum's first two moments, so they match within a few standard errors
    first = (res.weights * res.nodes).sum(-1)
    second = (res.weights * res.nodes ** 2).sum(-1)
    for samples, want in ((first, true_mean), (second, true_second)):
        stderr = float(samples.std()) / 40 ** 0.5
        assert abs(float(samples.mean()) - want) <= 4 * stderr, (float(samples.mean()), want, stderr)
    assert abs(mean - true_mean) <= 4 * float(first.std()) / 40 ** 0.5
    assert abs(var - true_var) < 0.5 * true_var, (var, true_var)
    # the quadrature's extreme nodes converge to the extreme eigenvalues
    assert abs(float(res.nodes.max()) - hi) < 1e-3 * span
    assert res.to_dict()["num_hvp"] == 40 * 30


def test_density_is_exact_with_as_many_steps_as_parameters():
    model = nn.Linear(2, 3).double()
    data = (torch.randn(8, 2, dtype=torch.float64), torch.randint(3, (8,)))
    res = hessian_density(model, CE, data, num_probes=3, steps=50, progress=False)
    from .cases import dense_hessian
    eigs = torch.linalg.eigvalsh(dense_hessian(model, CE, [data]))
    grid = torch.linspace(-1, 2, 301, dtype=torch.float64)
    # per probe, the quadrature is exact for polynomials: vᵀHv and vᵀH²v
    assert res.nodes.shape == (3, 9)
    assert torch.allclose(torch.sort(res.nodes[0].abs()).values[3:], torch.sort(eigs.abs()).values[3:],
                          atol=1e-8)
    assert res.density(grid, sigma=0.1).shape == (301,)


def test_density_plot_runs_headless(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    res = hessian_density(mlp(), CE, batch("mlp"), num_probes=2, steps=10, progress=False)
    fig, ax = res.plot()
    fig.savefig(tmp_path / "esd.png")
    assert (tmp_path / "esd.png").stat().st_size > 0

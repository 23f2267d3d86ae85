"""Sum losses over unequal batches (issue 12.2), max_hvp < top_k (12.8), the one operator protocol (16.4).

The reference is the dense Hessian of the loss over all samples at once (one batch), taken by
torch.autograd.functional.hessian, independent of the operator's batching and weighting.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fastvit_analysis import (
    HessianOperator,
    hessian_density,
    hessian_spectrum,
    hessian_trace,
    loss_landscape,
    max_eigenvalue_spectrum,
)
from fastvit_analysis.curvature.hutchpp import hutchinson
from fastvit_analysis.curvature.lanczos import lanczos_eigsh
from fastvit_analysis.curvature.power import power_iteration

from .cases import batch, dense_hessian, mlp

SUM = nn.CrossEntropyLoss(reduction="sum")


def unequal_batches(n_a: int = 30, n_b: int = 10):
    x, y = batch("mlp", n=n_a + n_b, seed=5)
    return (x, y), [(x[:n_a], y[:n_a]), (x[n_a:], y[n_a:])]


def test_sum_loss_hessian_over_unequal_batches_equals_the_one_batch_hessian():
    whole, parts = unequal_batches()
    exact = dense_hessian(mlp(), SUM, [whole])          # one batch: no weighting involved
    H = HessianOperator(mlp(), SUM, parts)
    assert H.loss_reduction == "sum"
    assert torch.allclose(H.dense(), exact, rtol=1e-10, atol=1e-10)
    eigs = torch.linalg.eigvalsh(exact)
    res = hessian_spectrum(mlp(), SUM, parts, top_k=2, which="LA", tol=1e-8, progress=False)
    assert torch.allclose(res.eigenvalues, eigs.flip(0)[:2], rtol=1e-7)


def test_sum_loss_without_a_reduction_attribute_needs_loss_reduction():
    whole, parts = unequal_batches()
    exact = dense_hessian(mlp(), SUM, [whole])

    def summed(out, y):  # a plain function: no .reduction to read
        return nn.functional.cross_entropy(out, y, reduction="sum")

    assert torch.allclose(HessianOperator(mlp(), summed, parts, loss_reduction="sum").dense(), exact,
                          rtol=1e-10, atol=1e-10)
    # read as a mean loss by default: the Hessian of (30·L_a + 10·L_b)/40, not of the sum
    mean_read = HessianOperator(mlp(), summed, parts).dense()
    assert not torch.allclose(mean_read, exact, rtol=1e-3)


def test_mean_loss_over_unequal_batches_is_the_mean_over_all_samples():
    whole, parts = unequal_batches()
    exact = dense_hessian(mlp(), nn.CrossEntropyLoss(), [whole])
    assert torch.allclose(HessianOperator(mlp(), nn.CrossEntropyLoss(), parts).dense(), exact,
                          rtol=1e-10, atol=1e-10)


def test_sum_loss_trace_and_density_do_not_depend_on_the_batching():
    whole, parts = unequal_batches()
    exact = float(dense_hessian(mlp(), SUM, [whole]).trace())
    a = hessian_trace(mlp(), SUM, [whole], num_probes=30, method="hutchinson", progress=False)
    b = hessian_trace(mlp(), SUM, parts, num_probes=30, method="hutchinson", progress=False)
    assert abs(a.value - b.value) <= 1e-9 * abs(a.value)     # same probes, same operator
    assert abs(b.value - exact) <= 4 * b.stderr
    da = hessian_density(mlp(), SUM, [whole], num_probes=2, steps=10, progress=False)
    db = hessian_density(mlp(), SUM, parts, num_probes=2, steps=10, progress=False)
    assert torch.allclose(da.nodes, db.nodes, rtol=1e-8, atol=1e-8)


def test_contradicting_or_unknown_reductions_are_clear_errors():
    _, parts = unequal_batches()
    with pytest.raises(ValueError, match="loss_reduction='mean' contradicts loss_fn.reduction='sum'"):
        HessianOperator(mlp(), SUM, parts, loss_reduction="mean")
    with pytest.raises(ValueError, match="loss_reduction must be one of"):
        HessianOperator(mlp(), nn.functional.cross_entropy, parts, loss_reduction="avg")
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        HessianOperator(mlp(), nn.CrossEntropyLoss(reduction="none"), parts)


def test_sum_loss_landscape_does_not_depend_on_the_batching():
    whole, parts = unequal_batches()
    a = loss_landscape(mlp(), SUM, [whole], steps=3, dims=1, progress=False)
    b = loss_landscape(mlp(), SUM, parts, steps=3, dims=1, progress=False)
    with torch.no_grad():   # direct formula at the centre point: the summed loss over all 40 samples
        centre = float(SUM(mlp().eval()(whole[0]), whole[1]))
    assert np.allclose(a.nll, b.nll, rtol=1e-12)
    assert abs(b.nll[1] - centre) <= 1e-10 * abs(centre)
    mean = loss_landscape(mlp(), nn.CrossEntropyLoss(), parts, steps=3, dims=1, progress=False)
    assert abs(mean.nll[1] - centre / 40) <= 1e-10 * abs(centre)


# ------------------------------------------------------------------------ 12.8: short results are loud
def test_max_hvp_below_top_k_is_an_error_up_front():
    x, y = batch("mlp", n=16)
    with pytest.raises(ValueError, match="max_hvp must be an int >= top_k=3"):
        hessian_spectrum(mlp(), nn.CrossEntropyLoss(), (x, y), top_k=3, max_hvp=2, progress=False)
    with pytest.raises(ValueError, match="max_hvp must be an int >= top_k=3"):
        max_eigenvalue_spectrum(mlp(), nn.CrossEntropyLoss(), (x, y), batch_size=8, top_k=3, max_hvp=2,
                                progress=False)


def test_non_converged_eigenvalues_are_flagged():
    x, y = batch("mlp", n=16)
    res = max_eigenvalue_spectrum(mlp(), nn.CrossEntropyLoss(), (x, y), batch_size=8, top_k=3, max_hvp=3,
                                  tol=1e-10, progress=False)
    assert res.eigenvalues.shape == (2, 3)                 # never silently short
    assert res.converged.dtype == torch.bool and not bool(res.converged.all())
    assert res.to_dict()["converged"] == res.converged.tolist()
    spec = hessian_spectrum(mlp(), nn.CrossEntropyLoss(), (x, y), top_k=3, max_hvp=3, tol=1e-10, progress=False)
    assert spec.eigenvalues.shape == (3,) and not bool(spec.converged.all())


# ------------------------------------------------------------------------ 16.4: one operator protocol
def test_every_solver_takes_an_operator_object():
    x, y = batch("mlp", n=16)
    H = HessianOperator(mlp(), nn.CrossEntropyLoss(), (x, y))
    exact = H.dense()
    eigs = torch.linalg.eigvalsh(exact)
    gen = torch.Generator().manual_seed(0)
    out = lanczos_eigsh(H, torch.randn(1, H.num_params, dtype=H.dtype, generator=gen), 2, tol=1e-10)
    assert torch.allclose(out.eigenvalues[0], eigs.flip(0)[:2], rtol=1e-8)
    values, vectors, n = power_iteration(H, 1, max_iter=500, tol=1e-12, generator=gen)
    assert abs(float(values[0]) - float(eigs.abs().max())) <= 1e-4 * float(eigs.abs().max())
    value, stderr, _ = hutchinson(H, 40, generator=gen)
    assert abs(value - float(exact.trace())) <= 4 * stderr
    with pytest.raises(TypeError, match="operator must have matmat"):
        lanczos_eigsh(H.matvec, torch.randn(1, H.num_params, dtype=H.dtype), 2)


def test_operator_base_matvec_scipy_and_weight_decay():
    x, y = batch("mlp", n=16)
    H = HessianOperator(mlp(), nn.CrossEntropyLoss(), (x, y), weight_decay=0.3)
    exact = dense_hessian(mlp(), nn.CrossEntropyLoss(), [(x, y)], weight_decay=0.3)
    v = torch.randn(H.num_params, dtype=torch.float64)
    assert torch.allclose(H.matvec(v), exact @ v, atol=1e-10)
    assert np.allclose(H.to_scipy() @ v.numpy(), (exact @ v).numpy(), atol=1e-10)
    assert H.shape == (H.num_params, H.num_params) and H.dtype == torch.float64

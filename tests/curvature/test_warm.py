"""Warm-started per-mini-batch spectra (Ritz vectors of the previous chunk as start block) equal cold
(random-start Lanczos) ones and the dense eigenvalues to tol; the explicit residuals are true residuals."""
from __future__ import annotations

import torch
from torch import nn

from fastvit_analysis import max_eigenvalue_spectrum
from fastvit_analysis.curvature.operator import HessianOperator, MiniBatchHessians
from fastvit_analysis.curvature.warm import residual_eigsh
from .cases import batch, dense_hessian, mlp

CE = nn.CrossEntropyLoss()


def dense_top(model, x, y, k):
    eigs = torch.linalg.eigvalsh(dense_hessian(model, CE, [(x, y)]))
    return eigs[eigs.abs().argsort(descending=True)][:k]


def test_warm_equals_cold_and_dense_to_tol():
    x, y = batch("mlp", n=48, seed=4)
    tol = 1e-6
    cold = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=3, tol=tol, warm_start=False,
                                   per_pass=2, progress=False)
    warm = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=3, tol=tol, warm_start=True,
                                   per_pass=2, progress=False)
    assert bool(warm.converged.all()) and bool(cold.converged.all())
    scale = cold.eigenvalues.abs().amax(dim=1, keepdim=True)
    assert ((warm.eigenvalues - cold.eigenvalues).abs() <= 10 * tol * scale).all()
    for i in range(6):
        want = dense_top(mlp(), x[8 * i:8 * (i + 1)], y[8 * i:8 * (i + 1)], 3)
        assert torch.allclose(warm.eigenvalues[i], want, rtol=1e-4, atol=1e-8), (i, warm.eigenvalues[i], want)


def test_residual_solver_reports_true_residuals_from_a_block_start():
    x, y = batch("mlp", n=16, seed=6)
    H = MiniBatchHessians(mlp(), CE, x.view(2, 8, -1), y.view(2, 8))
    g = torch.Generator().manual_seed(0)
    block = torch.randn(2, 4, H.num_params, dtype=torch.float64, generator=g)
    out = residual_eigsh(H, block, 3, which="LA", tol=1e-9, max_steps=400, generator=g)
    for i in range(2):
        Hi = HessianOperator(mlp(), CE, (x[8 * i:8 * (i + 1)], y[8 * i:8 * (i + 1)]))
        HV = Hi.matmat(out.eigenvectors[i])
        true = torch.linalg.vector_norm(HV - out.eigenvalues[i].unsqueeze(-1) * out.eigenvectors[i], dim=-1)
        assert torch.allclose(true, out.residual_estimates[i], rtol=1e-3, atol=1e-12)
        eigs = torch.linalg.eigvalsh(Hi.dense()).flip(0)[:3]
        assert torch.allclose(out.eigenvalues[i], eigs, rtol=1e-7)

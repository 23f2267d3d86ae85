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


def test_matmat_rows_is_the_subset_of_the_full_product():
    x, y = batch("mlp", n=24, seed=2)
    H = MiniBatchHessians(mlp(), CE, x.view(3, 8, -1), y.view(3, 8), weight_decay=0.1)
    V = torch.randn(3, H.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    full = H.matmat(V)
    rows = torch.tensor([2, 0])
    assert torch.allclose(H.matmat_rows(V[rows], rows), full[rows], rtol=1e-10, atol=1e-12)
    assert H.row_products == 5


def test_locked_problems_keep_their_result_and_stop_being_multiplied():
    # one easy problem (a 2-dimensional spectrum) and one hard one: the easy one locks early, keeps
    # its eigenpairs, and later products only carry the hard one
    class Dense:
        one_operator_per_row, num_operators = True, 2

        def __init__(self, mats):
            self.mats, self.shape, self.dtype, self.device = mats, tuple(mats.shape[1:]), mats.dtype, mats.device
            self.calls = []

        def matmat(self, V):
            self.calls.append(2)
            return torch.einsum("bij,bj->bi", self.mats, V)

        def matmat_rows(self, V, rows):
            self.calls.append(len(rows))
            return torch.einsum("bij,bj->bi", self.mats[rows], V)

    g = torch.Generator().manual_seed(3)
    P = 40
    Qe = torch.linalg.qr(torch.randn(P, P, dtype=torch.float64, generator=g)).Q
    easy = Qe @ torch.diag(torch.cat([torch.tensor([5.0, -4.0]), torch.zeros(P - 2)]).double()) @ Qe.T
    A = torch.randn(P, P, dtype=torch.float64, generator=g)
    hard = (A + A.T) / 2
    op = Dense(torch.stack([easy, hard]))
    out = residual_eigsh(op, torch.randn(2, 1, P, dtype=torch.float64, generator=g), 2, which="LM", tol=1e-10,
                         max_steps=200, generator=g)
    easy_steps, hard_steps = out.steps_per_problem.tolist()
    assert easy_steps < hard_steps and out.n_steps == hard_steps
    assert sum(op.calls) == easy_steps + hard_steps and 1 in op.calls
    for i, M in enumerate((easy, hard)):
        eigs = torch.linalg.eigvalsh(M)
        want = eigs[eigs.abs().argsort(descending=True)][:2]
        assert torch.allclose(out.eigenvalues[i][out.eigenvalues[i].abs().argsort(descending=True)], want, rtol=1e-8)
        true = torch.linalg.vector_norm(out.eigenvectors[i] @ M
                                        - out.eigenvalues[i].unsqueeze(-1) * out.eigenvectors[i], dim=-1)
        assert torch.allclose(true, out.residual_estimates[i], rtol=1e-3, atol=1e-12)

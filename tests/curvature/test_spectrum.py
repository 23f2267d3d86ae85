"""hessian_spectrum against eigvalsh of the dense Hessian; the power-iteration baseline; errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastvit_analysis import hessian_spectrum

from .cases import MODELS, batch, mlp, reference

CE = nn.CrossEntropyLoss()


def expected(eigs: torch.Tensor, which: str, k: int) -> torch.Tensor:
    if which == "LA":
        return eigs.flip(0)[:k]
    if which == "SA":
        return eigs[:k]
    return eigs[eigs.abs().argsort(descending=True)][:k]


@pytest.mark.parametrize("kind", ["mlp", "cnn", "vit"])
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_top5_match_dense_eigenvalues(kind, which):
    _, eigs = reference(kind)
    res = hessian_spectrum(MODELS[kind](), CE, batch(kind), top_k=5, which=which, tol=1e-6, progress=False)
    want = expected(eigs, which, 5)
    rel = ((res.eigenvalues - want).abs() / want.abs()).max()
    assert rel < 1e-4, (res.eigenvalues, want)
    assert bool(res.converged.all())
    assert (res.residuals <= 1e-6 * eigs.abs().max()).all()
    assert 5 < res.num_hvp <= 1000


def test_eigenvectors_and_result_serialisation():
    H, eigs = reference("mlp")
    res = hessian_spectrum(mlp(), CE, batch("mlp"), top_k=3, tol=1e-8, return_eigenvectors=True, progress=False)
    V = res.eigenvectors
    assert V.shape == (3, H.shape[0])
    assert torch.allclose(V @ V.T, torch.eye(3, dtype=V.dtype), atol=1e-8)
    assert torch.allclose(V @ H, res.eigenvalues.unsqueeze(-1) * V, atol=1e-6)
    d = res.to_dict()
    assert "eigenvectors" not in d and len(d["eigenvalues"]) == 3 and d["num_hvp"] == res.num_hvp


def test_weight_decay_shifts_every_eigenvalue_by_lambda():
    _, eigs = reference("mlp")
    res = hessian_spectrum(mlp(), CE, batch("mlp"), top_k=4, which="LA", weight_decay=0.25, tol=1e-8,
                           progress=False)
    assert torch.allclose(res.eigenvalues, eigs.flip(0)[:4] + 0.25, rtol=1e-6)


class Quadratic(nn.Module):
    """loss = ½ θᵀAθ: a Hessian with a chosen spectrum."""

    def __init__(self, n: int):
        super().__init__()
        self.theta = nn.Parameter(torch.randn(n, dtype=torch.float64))

    def forward(self, x):
        return self.theta


def test_power_baseline_fails_on_a_clustered_mixed_sign_spectrum_where_lanczos_is_exact():
    n = 300
    g = torch.Generator().manual_seed(0)
    top = torch.tensor([1.0, -0.998, 0.996, -0.994, 0.992], dtype=torch.float64)
    spectrum = torch.cat([top, torch.empty(n - 5, dtype=torch.float64).uniform_(-0.97, 0.97, generator=g)])
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))
    A = (Q * spectrum) @ Q.T
    loss = lambda out, y: 0.5 * out @ A @ out  # noqa: E731
    data = (torch.zeros(1, 1), torch.zeros(1))
    lanczos = hessian_spectrum(Quadratic(n), loss, data, top_k=5, which="LM", tol=1e-6, progress=False)
    assert torch.allclose(lanczos.eigenvalues, top, rtol=1e-4)
    assert bool(lanczos.converged.all())
    power = hessian_spectrum(Quadratic(n), loss, data, top_k=5, method="power", tol=1e-3, progress=False)
    wrong = ((power.eigenvalues - top).abs() / top.abs()) > 1e-2
    assert bool(wrong.any()) and not bool(power.converged.all())
    assert power.num_hvp > 5


@pytest.mark.parametrize("kwargs, match", [
    ({"which": "BE"}, "which"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 10_000}, "top_k"),
    ({"method": "arnoldi"}, "method"),
    ({"tol": 0.0}, "tol"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hessian_spectrum(mlp(), CE, batch("mlp"), progress=False, **kwargs)


def test_top_k_equal_to_num_params_is_an_error():
    model = nn.Linear(2, 2).double()  # 6 parameters
    with pytest.raises(ValueError, match="smaller than the number of parameters"):
        hessian_spectrum(model, CE, (torch.randn(4, 2, dtype=torch.float64), torch.randint(2, (4,))), top_k=6,
                         progress=False)


def test_tiny_model_with_fewer_parameters_than_the_basis_is_exact():
    model = nn.Linear(2, 3).double()  # 9 parameters: the Krylov space becomes the whole space
    data = (torch.randn(8, 2, dtype=torch.float64), torch.randint(3, (8,)))
    from .cases import dense_hessian
    eigs = torch.linalg.eigvalsh(dense_hessian(model, CE, [data]))
    res = hessian_spectrum(model, CE, data, top_k=8, which="SA", tol=1e-8, progress=False)
    assert torch.allclose(res.eigenvalues, eigs[:8], atol=1e-10)

"""GGNOperator and EmpiricalFisherOperator against dense JᵀH_outJ and the dense empirical Fisher (fp64)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from fastvit_analysis import EmpiricalFisherOperator, GGNOperator, hessian_density, hessian_spectrum, hessian_trace

from .cases import batch, cnn, mlp

MAKERS = {"mlp": mlp, "cnn": cnn}


def _functional(model):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    others = {**{n: p.detach() for n, p in model.named_parameters() if not p.requires_grad},
              **dict(model.named_buffers())}
    theta = torch.cat([p.detach().reshape(-1) for _, p in named])

    def outputs(t, x):
        state, offset = dict(others), 0
        for n, p in named:
            state[n] = t[offset:offset + p.numel()].view(p.shape)
            offset += p.numel()
        return functional_call(model, state, (x,))
    return theta, outputs


def dense_ggn(model, loss_fn, batches):
    """Σ_b w_b J_bᵀ H_out,b J_b with explicit Jacobians and output Hessians (mean loss: w_b = |b|/N)."""
    model.eval()
    theta, outputs = _functional(model)
    total = sum(x.shape[0] for x, _ in batches)
    G = 0
    for x, y in batches:
        J = torch.autograd.functional.jacobian(lambda t: outputs(t, x), theta).reshape(-1, theta.numel())
        out = outputs(theta, x).detach()
        H_out = torch.autograd.functional.hessian(lambda o: loss_fn(o.view_as(out), y), out.reshape(-1))
        G = G + (x.shape[0] / total) * J.T @ H_out @ J
    return G


def dense_empirical_fisher(model, loss_fn, batches):
    """(1/N) Σ_n g_n g_nᵀ, g_n the gradient of sample n's loss, one sample at a time."""
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for x, y in batches:
        for n in range(x.shape[0]):
            g = torch.autograd.grad(loss_fn(model(x[n:n + 1]), y[n:n + 1]), params)
            rows.append(torch.cat([t.reshape(-1) for t in g]))
    G = torch.stack(rows)
    return G.T @ G / G.shape[0]


def parts(kind):
    x, y = batch(kind, n=10, seed=3)
    return [(x[:7], y[:7]), (x[7:], y[7:])]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_ggn_equals_dense_jt_hout_j(kind):
    data = parts(kind)
    exact = dense_ggn(MAKERS[kind](), nn.CrossEntropyLoss(), data)
    G = GGNOperator(MAKERS[kind](), nn.CrossEntropyLoss(), data, weight_decay=0.1)
    got = G.dense()
    eye = torch.eye(G.num_params, dtype=torch.float64)
    assert (got - exact - 0.1 * eye).abs().max() <= 1e-10 * exact.abs().max()
    assert torch.linalg.eigvalsh(exact).min() > -1e-10       # PSD for cross-entropy


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_empirical_fisher_equals_dense_fisher(kind):
    data = parts(kind)
    exact = dense_empirical_fisher(MAKERS[kind](), nn.CrossEntropyLoss(), data)
    F = EmpiricalFisherOperator(MAKERS[kind](), nn.CrossEntropyLoss(), data)
    assert (F.dense() - exact).abs().max() <= 1e-10 * exact.abs().max()


def test_sum_reduction_fisher_and_ggn_are_n_times_the_mean_ones():
    data = parts("mlp")
    n = sum(x.shape[0] for x, _ in data)
    F_mean = EmpiricalFisherOperator(mlp(), nn.CrossEntropyLoss(), data).dense()
    F_sum = EmpiricalFisherOperator(mlp(), nn.CrossEntropyLoss(reduction="sum"), data).dense()
    assert torch.allclose(F_sum, n * F_mean, rtol=1e-10, atol=1e-12)
    G_mean = GGNOperator(mlp(), nn.CrossEntropyLoss(), data).dense()
    G_sum = GGNOperator(mlp(), nn.CrossEntropyLoss(reduction="sum"), data).dense()
    assert torch.allclose(G_sum, n * G_mean, rtol=1e-10, atol=1e-12)


def test_every_solver_accepts_ggn_and_fisher_operators():
    data = parts("mlp")
    for op in (GGNOperator(mlp(), nn.CrossEntropyLoss(), data),
               EmpiricalFisherOperator(mlp(), nn.CrossEntropyLoss(), data)):
        exact = op.dense()
        eigs = torch.linalg.eigvalsh(exact)
        spec = hessian_spectrum(None, None, None, operator=op, top_k=2, which="LA", tol=1e-8, progress=False)
        assert torch.allclose(spec.eigenvalues, eigs.flip(0)[:2], rtol=1e-6)
        tr = hessian_trace(None, None, None, operator=op, num_probes=30, progress=False)
        assert abs(tr.value - float(exact.trace())) <= 4 * tr.stderr + 1e-9
        dens = hessian_density(None, None, None, operator=op, num_probes=2, steps=12, progress=False)
        assert dens.nodes.max() <= eigs.max() * (1 + 1e-8)


def test_ggn_and_fisher_share_one_constructor_without_hvp_mode():
    # one __init__ (operator._ProductOperator) for both; their product has no hvp_mode to choose
    import inspect

    from fastvit_analysis.curvature.operator import _ProductOperator

    assert GGNOperator.__init__ is EmpiricalFisherOperator.__init__ is _ProductOperator.__init__
    assert "hvp_mode" not in inspect.signature(GGNOperator).parameters
    data = (torch.randn(4, 3, dtype=torch.float64), torch.randint(2, (4,)))
    for make in (GGNOperator, EmpiricalFisherOperator):
        with pytest.raises(TypeError, match="hvp_mode"):
            make(nn.Linear(3, 2).double(), nn.CrossEntropyLoss(), data, hvp_mode="double-backward")

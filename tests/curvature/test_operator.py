"""HessianOperator against the dense Hessian: products, data handling, model state, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastvit_analysis import HessianOperator, hessian_spectrum

from .cases import MODELS, batch, mlp, reference, reference_hvp, vit

CE = nn.CrossEntropyLoss()


@pytest.mark.parametrize("hvp_mode", ["forward-over-reverse", "reverse-over-reverse", "double-backward"])
@pytest.mark.parametrize("kind", ["mlp", "cnn", "vit"])
def test_matvec_and_matmat_match_dense_hessian(kind, hvp_mode):
    model = MODELS[kind]()
    data = batch(kind)
    H = HessianOperator(model, CE, data, hvp_mode=hvp_mode)
    assert H.hvp_mode == hvp_mode
    dense, _ = reference(kind)
    assert H.num_params == dense.shape[0]
    V = torch.randn(5, H.num_params, dtype=torch.float64)
    scale = dense.abs().max()
    assert torch.allclose(H.matvec(V[0]), dense @ V[0], atol=1e-5 * scale, rtol=1e-5)
    assert torch.allclose(H.matmat(V), V @ dense, atol=1e-5 * scale, rtol=1e-5)
    assert H.num_hvp == 6


def test_multi_batch_data_is_the_hessian_of_the_mean_loss_over_all_samples():
    model = mlp()
    x, y = batch("mlp", n=16)
    parts = [(x[:3], y[:3]), (x[3:10], y[3:10]), (x[10:], y[10:])]  # unequal sizes: weighted mean
    V = torch.randn(3, sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    one = HessianOperator(model, CE, (x, y)).matmat(V)
    many = HessianOperator(model, CE, iter(parts)).matmat(V)
    assert torch.allclose(one, many, atol=1e-12)


def test_frozen_parameters_are_excluded_and_params_restricts_to_a_module():
    model = mlp()
    model[0].weight.requires_grad_(False)
    data = batch("mlp")
    H = HessianOperator(model, CE, data)
    assert "0.weight" not in H.parameter_names
    assert H.num_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    v = torch.randn(H.num_params, dtype=torch.float64)
    assert torch.allclose(H.matvec(v), reference_hvp(model, CE, data, v), atol=1e-10)
    last = HessianOperator(model, CE, data, params=["4"])
    assert last.parameter_names == ["4.weight", "4.bias"]
    # the block of the full Hessian that belongs to the last layer: H restricted = P H P
    n = last.num_params
    u = torch.randn(n, dtype=torch.float64)
    padded = torch.cat([torch.zeros(H.num_params - n, dtype=torch.float64), u])
    assert torch.allclose(last.matvec(u), reference_hvp(model, CE, data, padded)[-n:], atol=1e-10)


def test_weight_decay_adds_lambda_v():
    model, data = mlp(), batch("mlp")
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    plain = HessianOperator(model, CE, data).matvec(v)
    decayed = HessianOperator(model, CE, data, weight_decay=0.3).matvec(v)
    assert torch.allclose(decayed, plain + 0.3 * v, atol=1e-12)
    assert torch.allclose(decayed, reference_hvp(model, CE, data, v) + 0.3 * v, atol=1e-10)


def test_soft_targets_work():
    model = mlp()
    x, y = batch("mlp")
    soft = torch.softmax(torch.randn(x.shape[0], 4, dtype=torch.float64), dim=-1)
    H = HessianOperator(model, CE, (x, soft))
    v = torch.randn(H.num_params, dtype=torch.float64)
    assert torch.allclose(H.matvec(v), reference_hvp(model, CE, (x, soft), v), atol=1e-10)


def test_model_mode_parameters_buffers_and_grads_are_unchanged():
    model = MODELS["cnn"]()  # train mode, BatchNorm with running stats, dropout
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model.train()
    model[1].eval()  # a mixed mode must be restored per module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    hessian_spectrum(model, CE, batch("cnn"), top_k=2, tol=1e-2, max_hvp=30, progress=False)
    H = HessianOperator(model, CE, batch("cnn"))
    H.matmat(torch.randn(2, H.num_params, dtype=torch.float64))
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert model[3].weight.grad is None


def test_batchnorm_uses_running_statistics():
    model, data = MODELS["cnn"](), batch("cnn")
    H = HessianOperator(model, CE, data)
    v = torch.randn(H.num_params, dtype=torch.float64)
    assert torch.allclose(H.matvec(v), reference_hvp(model, CE, data, v), atol=1e-10)
    model.train()  # train-mode BatchNorm (batch statistics) would give another Hessian
    params = [p for p in model.parameters()]
    g = torch.autograd.grad(CE(model(data[0]), data[1]), params, create_graph=True)
    hv_train = torch.autograd.grad(sum((a * b.view_as(a)).sum() for a, b in
                                       zip(g, v.split([p.numel() for p in params]))), params)
    assert not torch.allclose(H.matvec(v), torch.cat([h.reshape(-1) for h in hv_train]), atol=1e-6)


def test_to_scipy_linear_operator():
    model, data = mlp(), batch("mlp")
    H = HessianOperator(model, CE, data)
    op = H.to_scipy()
    v = torch.randn(H.num_params, dtype=torch.float64)
    assert op.shape == (H.num_params, H.num_params)
    assert torch.allclose(torch.from_numpy(op @ v.numpy()), H.matvec(v), atol=1e-12)
    V = torch.randn(H.num_params, 2, dtype=torch.float64)
    assert torch.allclose(torch.from_numpy(op.matmat(V.numpy())), H.matmat(V.T).T, atol=1e-12)


# --- errors -------------------------------------------------------------------------------------

def test_error_no_trainable_parameters():
    model = mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        HessianOperator(model, CE, batch("mlp"))
    with pytest.raises(ValueError, match="params"):
        HessianOperator(mlp(), CE, batch("mlp"), params=["nonexistent"])


def test_error_empty_data():
    with pytest.raises(ValueError, match="empty"):
        HessianOperator(mlp(), CE, [])
    x, y = batch("mlp")
    with pytest.raises(ValueError, match="empty"):
        HessianOperator(mlp(), CE, (x[:0], y[:0]))


def test_error_loss_not_scalar():
    with pytest.raises(ValueError, match="scalar"):
        HessianOperator(mlp(), nn.CrossEntropyLoss(reduction="none"), batch("mlp"))


def test_error_nan_loss_names_the_batch():
    x, y = batch("mlp")
    bad = x.clone()
    bad[2, 0] = float("nan")
    with pytest.raises(ValueError, match="batch 1"):
        HessianOperator(mlp(), CE, [(x, y), (bad, y)])


def test_error_wrong_vector_shape():
    H = HessianOperator(mlp(), CE, batch("mlp"))
    with pytest.raises(ValueError, match="shape"):
        H.matvec(torch.randn(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        H.matmat(torch.randn(H.num_params, dtype=torch.float64))


def test_default_fused_vit_runs_through_fused_attention_and_is_restored():
    model = vit(fused=True)  # timm's default: fused SDPA, which has no forward-mode AD
    data = batch("vit")
    dense, _ = reference("vit")
    H = HessianOperator(model, CE, data)
    V = torch.randn(2, H.num_params, dtype=torch.float64)
    assert torch.allclose(H.matmat(V), V @ dense, atol=1e-10)
    from fastvit_analysis.attention.patch import is_patched
    assert not any(is_patched(m) for m in model.modules())


class _RawSDPA(nn.Module):
    """Calls fused SDPA from a module that patch_attention does not know."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8, dtype=torch.float64)
        self.head = nn.Linear(8, 3, dtype=torch.float64)

    def forward(self, x):
        h = self.proj(x).unsqueeze(1)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            h = nn.functional.scaled_dot_product_attention(h.float(), h.float(), h.float()).double()
        return self.head(h.squeeze(1).mean(1))


def test_unpatchable_fused_attention_gives_a_clear_error():
    model = _RawSDPA()
    data = (torch.randn(2, 5, 8, dtype=torch.float64), torch.tensor([0, 2]))
    H = HessianOperator(model, CE, data)  # the forward pass itself works
    with pytest.raises(RuntimeError, match="patch_attention") as info:
        H.matvec(torch.randn(H.num_params, dtype=torch.float64))
    assert info.value.__cause__ is None and "flash" not in str(info.value)


def test_vectors_per_pass_only_changes_the_chunking():
    model, data = mlp(), batch("mlp")
    V = torch.randn(5, sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    one_pass = HessianOperator(model, CE, data, per_pass=5).matmat(V)
    for chunk in (1, 3):
        assert torch.allclose(HessianOperator(model, CE, data, per_pass=chunk).matmat(V), one_pass,
                              atol=1e-12)
    with pytest.raises(ValueError, match="per_pass"):
        HessianOperator(model, CE, data, per_pass=0)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_reverse_over_reverse_mode_matches_dense(kind):
    model, data = MODELS[kind](), batch(kind)
    dense, _ = reference(kind)
    H = HessianOperator(model, CE, data, hvp_mode="reverse-over-reverse")
    V = torch.randn(3, H.num_params, dtype=torch.float64)
    assert torch.allclose(H.matmat(V), V @ dense, atol=1e-10)
    with pytest.raises(ValueError, match="hvp_mode"):
        HessianOperator(model, CE, data, hvp_mode="forward")


def test_default_mode_keeps_the_graph_of_one_batch_and_recomputes_for_several():
    model = mlp()
    x, y = batch("mlp", n=16)
    assert HessianOperator(model, CE, (x, y)).hvp_mode == "double-backward"
    assert HessianOperator(model, CE, [(x[:8], y[:8]), (x[8:], y[8:])]).hvp_mode == "forward-over-reverse"


def test_double_backward_mode_over_several_batches_and_as_a_snapshot():
    model = mlp()
    x, y = batch("mlp", n=16)
    V = torch.randn(3, sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    one = HessianOperator(model, CE, (x, y), hvp_mode="forward-over-reverse").matmat(V)
    H = HessianOperator(model, CE, [(x[:5], y[:5]), (x[5:], y[5:])], hvp_mode="double-backward")
    assert torch.allclose(H.matmat(V), one, atol=1e-12)
    with torch.no_grad():  # products stay those of theta at construction, in every mode
        for p in model.parameters():
            p.mul_(2.0)
    assert torch.allclose(H.matvec(V[0]), one[0], atol=1e-12)
    assert all(p.grad is None for p in model.parameters())

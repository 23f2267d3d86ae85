"""The shared curvature cases (tests/curvature/cases.py) are what they claim: tiny models, an exact dense Hessian."""
import torch
from torch import nn

from .cases import MODELS, batch, mlp, reference, reference_hvp


def test_tiny_models_have_1k_to_5k_params_and_a_symmetric_dense_hessian():
    for name, make in MODELS.items():
        model = make()
        P = sum(p.numel() for p in model.parameters())
        assert 300 <= P <= 5000, (name, P)
    H, _ = reference("mlp")
    assert torch.allclose(H, H.T, atol=1e-12)
    v = torch.randn(H.shape[0], dtype=torch.float64)
    assert torch.allclose(reference_hvp(mlp(), nn.CrossEntropyLoss(), batch("mlp"), v), H @ v, atol=1e-12)

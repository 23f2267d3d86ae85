"""block_spectra against the eigenvalues and trace of the dense Hessian's diagonal blocks; auto blocks."""
from __future__ import annotations

import matplotlib
import pytest
import timm
import torch
from torch import nn

from fastvit_analysis import block_spectra
from fastvit_analysis.curvature.blocks import auto_blocks

from .cases import batch, dense_hessian, mlp

matplotlib.use("Agg")
CE = nn.CrossEntropyLoss()


def test_block_eigenvalues_and_traces_equal_the_dense_diagonal_blocks():
    model, data = mlp(), batch("mlp", n=12)
    H = dense_hessian(model, CE, [data])
    sizes = [p.numel() for p in model.parameters()]
    # mlp = Sequential(Linear 0, Tanh, Linear 2, GELU, Linear 4): weight+bias per Linear
    bounds, start = [], 0
    for i in range(0, len(sizes), 2):
        bounds.append((start, start + sizes[i] + sizes[i + 1]))
        start += sizes[i] + sizes[i + 1]
    res = block_spectra(model, CE, data, top_k=2, which="LA", tol=1e-8, num_probes=150, progress=False)
    assert res.blocks == ["0", "2", "4"]
    for r, (a, b) in enumerate(bounds):
        block = H[a:b, a:b]
        eigs = torch.linalg.eigvalsh(block).flip(0)[:2]
        assert torch.allclose(res.eigenvalues[r], eigs, rtol=1e-6), (r, res.eigenvalues[r], eigs)
        assert res.num_params[r] == b - a
        exact = float(block.trace())
        assert abs(float(res.trace[r]) - exact) <= 4 * float(res.trace_stderr[r]) + 1e-9 * abs(exact)
    assert bool(res.converged.all())
    est = res.trace_estimates()[0]
    assert est.n == 150 and est.ci95[0] <= est.value <= est.ci95[1]
    fig = res.plot()
    assert len(fig.axes) == 2


def test_auto_blocks_expand_a_vit_into_its_transformer_blocks():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=8, patch_size=4, embed_dim=12,
                            depth=3, num_heads=2, num_classes=4)
    labels = list(auto_blocks(vit))
    assert labels[:1] == ["patch_embed"]
    assert ["blocks.0", "blocks.1", "blocks.2"] == [b for b in labels if "blocks" in b]
    assert "head" in labels


def test_block_arguments_are_checked():
    with pytest.raises(ValueError, match="'nope' names no parameter"):
        block_spectra(mlp(), CE, batch("mlp"), blocks=["nope"], progress=False)
    with pytest.raises(TypeError, match="blocks must be"):
        block_spectra(mlp(), CE, batch("mlp"), blocks=3, progress=False)
    with pytest.raises(ValueError, match="num_probes"):
        block_spectra(mlp(), CE, batch("mlp"), num_probes=2, progress=False)

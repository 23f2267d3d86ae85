"""Tiny models (~500 parameters, float64) and the dense reference Hessian shared by the curvature tests.

The reference takes the Hessian by reverse-over-reverse (torch.autograd.functional.hessian), a path
independent of the forward-over-reverse products under test.
"""
from __future__ import annotations

import functools

import timm
import torch
from torch import nn
from torch.func import functional_call


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 4)).double()


def cnn() -> nn.Module:
    """Conv + BatchNorm (with non-trivial running statistics) + dropout, left in train mode."""
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
        nn.Conv2d(5, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(6, 4)).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.train()


def vit(fused: bool = False) -> nn.Module:
    """A one-block timm ViT on 4x4 images (patch 2), attention on the math path unless fused=True."""
    torch.manual_seed(3)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=4, patch_size=2, embed_dim=6,
                              depth=1, num_heads=2, mlp_ratio=2.0, num_classes=4, drop_path_rate=0.1)
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused
    return model.double()


def batch(kind: str, n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = {"mlp": (n, 6), "cnn": (n, 3, 4, 4), "vit": (n, 3, 4, 4)}[kind]
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randint(4, (n,), generator=g)


MODELS = {"mlp": mlp, "cnn": cnn, "vit": vit}


@functools.lru_cache(maxsize=None)
def reference(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(dense Hessian, ascending eigenvalues) of MODELS[kind]() on batch(kind), computed once per session."""
    H = dense_hessian(MODELS[kind](), nn.CrossEntropyLoss(), [batch(kind)])
    return H, torch.linalg.eigvalsh(H)


def reference_hvp(model: nn.Module, loss_fn, data, v: torch.Tensor) -> torch.Tensor:
    """H v by double backward (reverse-over-reverse), eval mode, all trainable parameters."""
    was = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model(data[0]), data[1])
    grads = torch.autograd.grad(loss, params, create_graph=True)
    chunks = list(v.split([p.numel() for p in params]))
    dot = sum((g * c.view_as(g)).sum() for g, c in zip(grads, chunks))
    hv = torch.autograd.grad(dot, params)
    model.train(was)
    return torch.cat([h.reshape(-1) for h in hv])


def dense_hessian(model: nn.Module, loss_fn, batches, weight_decay: float = 0.0) -> torch.Tensor:
    """Exact [P, P] Hessian of the sample-weighted mean loss over `batches`, eval mode, trainable params."""
    was = model.training
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    others = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    others.update(dict(model.named_buffers()))
    theta = torch.cat([p.detach().reshape(-1) for _, p in named])
    total = sum(x.shape[0] for x, _ in batches)

    def f(t):
        state, offset = dict(others), 0
        for n, p in named:
            state[n] = t[offset:offset + p.numel()].view(p.shape)
            offset += p.numel()
        loss = sum(loss_fn(functional_call(model, state, (x,)), y) * (x.shape[0] / total) for x, y in batches)
        return loss + 0.5 * weight_decay * (t * t).sum()

    H = torch.autograd.functional.hessian(f, theta, vectorize=True)
    model.train(was)
    return H

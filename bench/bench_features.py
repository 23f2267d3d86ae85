"""Benchmarks of the feature analyses against the paper's / a straightforward eager pipeline.

1. Fourier + variance statistics of 25 ViT-Ti latents (batch 64, (64, 197, 192) tokens with a class
   token): `feature_statistics` end to end through the public API (hooks, streaming accumulation) on
   replayed latents, vs the paper's notebook pipeline (rearrange, fft2, log|.|, roll, mean, diag; var).
   The ViT-Ti forward itself is reported in its own group.
2. Mini-batch CKA on 25 x 25 layer pairs, batches of 256: Grams once per layer per batch and O(n^2)
   unbiased HSIC from elementwise/row sums, vs recomputing both Grams per pair with n x n products.
"""
import math

import pytest
import torch
from torch import nn

from fastvit_analysis.features.cka import minibatch_cka
from fastvit_analysis.features.statistics import feature_statistics

LAYERS = 25


class Replay(nn.Module):
    """A 'model' whose forward emits precomputed latents through 25 hookable modules, so that a
    benchmark measures the analysis, not the network."""

    num_prefix_tokens = 1

    def __init__(self, latents):
        super().__init__()
        self.latents = latents
        self.layers = nn.ModuleList(nn.Identity() for _ in latents)

    def forward(self, x):
        for layer, z in zip(self.layers, self.latents):
            layer(z)
        return x


def vit_ti_latents(batch=64, tokens=197, dim=192, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, tokens, dim, generator=g)
    # smooth-ish, layer-dependent latents (mixing with fresh noise), like a ViT's residual stream
    return [base + 0.5 * i / LAYERS * torch.randn(batch, tokens, dim, generator=g) for i in range(LAYERS)]


def paper_pipeline(latents):
    """The paper's notebooks: Fourier (fft2 → log amplitude → roll → mean → diag) and variance."""
    fourier, variances = [], []
    for latent in latents:
        latent = latent[:, 1:]  # drop the class token
        b, n, c = latent.shape
        h = int(math.sqrt(n))
        latent = latent.transpose(1, 2).reshape(b, c, h, h)  # rearrange "b (h w) c -> b c h w"
        f = torch.log(torch.fft.fft2(latent).abs() + 1e-6)
        f = torch.roll(f, shifts=(int(h / 2), int(h / 2)), dims=(2, 3)).mean(dim=(0, 1))
        f = f.diag()[int(h / 2):]
        fourier.append(f - f[0])
        variances.append(latent.var(dim=(-1, -2)).mean())
    return fourier, variances


@pytest.fixture(scope="module")
def latents():
    return vit_ti_latents()


def test_fourier_variance_paper_pipeline(benchmark, latents):
    benchmark.group = "fourier+variance 25 ViT-Ti latents (64,197,192)"
    benchmark.extra_info["reference"] = True
    benchmark.pedantic(paper_pipeline, args=(latents,), rounds=3, iterations=1, warmup_rounds=1)


def test_fourier_variance_fastvit(benchmark, latents):
    benchmark.group = "fourier+variance 25 ViT-Ti latents (64,197,192)"
    model = Replay(latents)
    batch = (torch.zeros(64, 1), torch.zeros(64))
    layers = [f"layers.{i}" for i in range(LAYERS)]
    fourier, variance = benchmark.pedantic(
        lambda: feature_statistics(model, batch, layers=layers, progress=False),
        rounds=5, iterations=1, warmup_rounds=1)
    ref_f, ref_v = paper_pipeline(latents)
    for i in range(LAYERS):
        torch.testing.assert_close(torch.tensor(fourier.delta_log_amplitude[i]), ref_f[i], rtol=0, atol=1e-4)
        assert variance.variance[i] == pytest.approx(float(ref_v[i]), rel=1e-4)


def test_vit_ti_forward_for_scale(benchmark):
    """Not part of the ratio: the ViT-Ti forward that produces such latents (reported separately)."""
    import timm

    benchmark.group = "ViT-Ti forward, batch 64 at 224 (excluded from the ratio)"
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10).eval()
    x = torch.randn(64, 3, 224, 224)
    with torch.no_grad():
        benchmark.pedantic(model, args=(x,), rounds=1, iterations=1, warmup_rounds=0)


# ---------------------------------------------------------------------------------------------------
# Mini-batch CKA
# ---------------------------------------------------------------------------------------------------
CKA_N = 256
CKA_DIM = 512  # features per latent (flattened); the reference costs ~0.15 s per pair on 2 cores


def straightforward_hsic(k, l):
    """Unbiased HSIC with n x n matrix products (O(n^3))."""
    n = k.shape[0]
    k = k.clone()
    l = l.clone()
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=k.dtype)
    kl = k @ l
    value = torch.trace(kl) + (one.T @ k @ one) * (one.T @ l @ one) / ((n - 1) * (n - 2)) \
        - 2.0 / (n - 2) * (one.T @ kl @ one)
    return value.squeeze() / (n * (n - 3))


def straightforward_cka(latents_a, latents_b):
    """Per pair: recompute both Grams and the three HSICs with n x n products."""
    la, lb = len(latents_a), len(latents_b)
    matrix = torch.zeros(la, lb, dtype=torch.float64)
    for i, x in enumerate(latents_a):
        for j, y in enumerate(latents_b):
            x2, y2 = x.reshape(len(x), -1), y.reshape(len(y), -1)
            k, l = (x2 @ x2.T).double(), (y2 @ y2.T).double()
            matrix[i, j] = straightforward_hsic(k, l) / torch.sqrt(straightforward_hsic(k, k)
                                                                    * straightforward_hsic(l, l))
    return matrix


@pytest.fixture(scope="module")
def cka_latents():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(CKA_N, CKA_DIM, generator=g)
    return [base + i / LAYERS * torch.randn(CKA_N, CKA_DIM, generator=g) for i in range(LAYERS)]


def test_cka_straightforward(benchmark, cka_latents):
    benchmark.group = f"minibatch_cka 25x25 pairs, n={CKA_N}, d={CKA_DIM}"
    benchmark.extra_info["reference"] = True
    benchmark.pedantic(straightforward_cka, args=(cka_latents, cka_latents), rounds=1, iterations=1,
                       warmup_rounds=0)


def test_cka_fastvit(benchmark, cka_latents):
    benchmark.group = f"minibatch_cka 25x25 pairs, n={CKA_N}, d={CKA_DIM}"
    model = Replay(cka_latents)
    model.num_prefix_tokens = 0
    batch = (torch.zeros(CKA_N, 1), torch.zeros(CKA_N))
    layers = [f"layers.{i}" for i in range(LAYERS)]
    res = benchmark.pedantic(lambda: minibatch_cka(model, batch, layers_a=layers, progress=False),
                             rounds=3, iterations=1, warmup_rounds=1)
    subset = straightforward_cka(cka_latents[:3], cka_latents[:3])
    torch.testing.assert_close(torch.tensor(res.matrix, dtype=torch.float64)[:3, :3], subset, rtol=1e-5, atol=1e-6)

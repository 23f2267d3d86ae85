"""Linear CKA with the unbiased HSIC: a direct O(n^3) reference, invariances, mini-batch accumulation, errors."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

from fastvit_analysis import linear_cka, minibatch_cka  # noqa: E402
from fastvit_analysis.features.cka import unbiased_hsic  # noqa: E402


def direct_hsic(x, y):
    """Textbook unbiased HSIC (Song et al. 2012) with explicit n x n matrix products, float64."""
    x, y = x.reshape(len(x), -1).double(), y.reshape(len(y), -1).double()
    n = x.shape[0]
    k, l = x @ x.T, y @ y.T
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=torch.float64)
    term1 = torch.trace(k @ l)
    term2 = (one.T @ k @ one) * (one.T @ l @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one.T @ k @ l @ one)
    return ((term1 + term2 - term3) / (n * (n - 3))).squeeze()


def direct_cka(x, y):
    return direct_hsic(x, y) / torch.sqrt(direct_hsic(x, x) * direct_hsic(y, y))


def test_linear_cka_equals_direct_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 7, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(7, 11, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(20, 11, generator=g,
                                                                                               dtype=torch.float64)
    torch.testing.assert_close(linear_cka(x, y), direct_cka(x, y), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(unbiased_hsic(x @ x.T, y @ y.T), direct_hsic(x, y), rtol=1e-10, atol=1e-12)
    # a 4-D latent is flattened per example
    z = torch.randn(20, 2, 3, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(linear_cka(z, y), direct_cka(z, y), rtol=1e-10, atol=1e-12)


def test_linear_cka_self_invariances_symmetry():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 12, generator=g, dtype=torch.float64)
    y = torch.randn(30, 5, generator=g, dtype=torch.float64) + x[:, :5]
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    assert float(linear_cka(x, x)) == pytest.approx(1.0, abs=1e-12)
    assert float(linear_cka(x @ q, y)) == pytest.approx(float(linear_cka(x, y)), abs=1e-12)
    assert float(linear_cka(7.5 * x, 0.1 * y)) == pytest.approx(float(linear_cka(x, y)), abs=1e-12)
    assert float(linear_cka(x, y)) == pytest.approx(float(linear_cka(y, x)), abs=1e-12)
    assert 0.0 < float(linear_cka(x, y)) < 1.0


def test_linear_cka_errors():
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(torch.randn(3, 5), torch.randn(3, 5))
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(torch.randn(6, 5), torch.randn(7, 5))
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        linear_cka(torch.randn(6), torch.randn(6, 2))
    with pytest.raises(TypeError, match="tensor"):
        linear_cka([[1.0]], torch.randn(6, 2))


def tiny_vit(seed):
    torch.manual_seed(seed)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=10).eval()


def batches(sizes, seed=2):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, 16, 16, generator=g), torch.zeros(n, dtype=torch.long)) for n in sizes]


def test_minibatch_cka_accumulates_unbiased_hsic_over_batches():
    from fastvit_analysis import extract_features

    a, b = tiny_vit(0), tiny_vit(1)
    data = batches([6, 5, 8])
    res = minibatch_cka(a, data, b, progress=False)
    feats = [(extract_features(a, x), extract_features(b, x)) for x, _ in data]
    names_a, names_b = list(feats[0][0]), list(feats[0][1])
    assert res.names_a == names_a and res.num_batches == 3 and res.num_samples == 19
    expected = torch.zeros(len(names_a), len(names_b), dtype=torch.float64)
    kk = {na: sum(direct_hsic(fa[na], fa[na]) for fa, _ in feats) for na in names_a}
    ll = {nb: sum(direct_hsic(fb[nb], fb[nb]) for _, fb in feats) for nb in names_b}
    for i, na in enumerate(names_a):
        for j, nb in enumerate(names_b):
            kl = sum(direct_hsic(fa[na], fb[nb]) for fa, fb in feats)
            expected[i, j] = kl / torch.sqrt(kk[na] * ll[nb])
    torch.testing.assert_close(torch.tensor(res.matrix, dtype=torch.float64), expected, rtol=1e-5, atol=1e-6)


def test_minibatch_cka_within_one_model_is_symmetric_with_unit_diagonal(tmp_path):
    net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10,
                                    channels=(8, 8, 16, 16)).eval()
    res = minibatch_cka(net, batches([6, 6]), progress=False)
    m = torch.tensor(res.matrix, dtype=torch.float64)
    assert m.shape == (5, 5)
    torch.testing.assert_close(m, m.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.diagonal(m), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-9)
    assert res.kinds_a[0] == "embed" and res.to_dict()["type"] == "CKAResult"
    fig = res.plot(labels=True)
    assert len(fig.axes[0].get_xticklabels()) == 5
    # selected layers, the two-model form with the same model gives the same numbers
    sub = minibatch_cka(net, batches([6, 6]), net, layers_a=["layer1.0"], layers_b=["maxpool", "layer4.0"],
                        progress=False)
    assert sub.matrix[0] == pytest.approx([m[1, 0].item(), m[1, 4].item()], abs=1e-9)


def test_minibatch_cka_errors():
    vit = tiny_vit(0)
    with pytest.raises(ValueError, match="at least 4"):
        minibatch_cka(vit, batches([6, 3]), progress=False)
    with pytest.raises(ValueError, match="nope"):
        minibatch_cka(vit, batches([6]), layers_a=["nope"], progress=False)
    with pytest.raises(ValueError, match="empty"):
        minibatch_cka(vit, [], progress=False)



def offset_features(seed, n=32, d1=256, d2=128, scale=0.3, offset=5.0):
    """float32 features whose common offset dwarfs their spread (as post-ReLU/GELU latents), with a
    partly shared signal; returned with their exact float64 copies."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d1, generator=g, dtype=torch.float64)
    y = torch.relu(x @ torch.randn(d1, d2, generator=g, dtype=torch.float64) / 16) \
        + 0.5 * torch.randn(n, d2, generator=g, dtype=torch.float64)
    x32, y32 = (scale * x + offset).float(), (scale * y + offset).float()
    return x32, y32, x32.double(), y32.double()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_cka_float32_offset_features_match_float64(seed):
    # uncentred float32 Grams lost 0.9e-4 to 2.8e-4 relative here; per-batch centring (exact for the
    # unbiased HSIC) brings float32 to the float64 answer on the same (float32-rounded) inputs
    x32, y32, x64, y64 = offset_features(seed)
    ref = float(direct_cka(x64, y64))
    got = float(linear_cka(x32, y32))
    assert abs(got - ref) <= 1e-5 * abs(ref)
    # the shift invariance is exact in float64
    assert float(linear_cka(x64, y64)) == pytest.approx(float(linear_cka(x64 - 5.0, y64 + 3.0)), rel=1e-12)
    # bf16 features are centred and multiplied in float32 (no silent bf16 Gram)
    xb = x32.bfloat16()
    assert float(linear_cka(xb, y32)) == pytest.approx(float(direct_cka(xb.double(), y64)), rel=1e-5)


class _Shift(torch.nn.Module):
    def __init__(self, scale, offset):
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x):
        return self.scale * x + self.offset


def test_minibatch_cka_float32_offset_latents_match_float64():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 256), _Shift(0.3, 5.0), torch.nn.Linear(256, 128),
                              _Shift(0.3, 5.0)).eval()
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(n, 32, generator=g), torch.zeros(n, dtype=torch.long)) for n in (24, 16)]
    res = minibatch_cka(net, data, layers_a=["1", "3"], progress=False)
    assert res.names_a == ["1", "3"]
    with torch.no_grad():
        feats = [(net[:2](x).double(), net(x).double()) for x, _ in data]
    kk = sum(direct_hsic(a, a) for a, _ in feats)
    ll = sum(direct_hsic(b, b) for _, b in feats)
    kl = sum(direct_hsic(a, b) for a, b in feats)
    ref = float(kl / torch.sqrt(kk * ll))
    assert abs(res.matrix[0][1] - ref) <= 1e-5 * abs(ref)
    assert minibatch_cka(net, data, layers_a=["1", "3"], progress=False).matrix == res.matrix

"""Every registered model builds, runs forward/backward at tiny size, and has SPEC's parameter count."""
import pytest
import timm
import torch

import fastvit_analysis  # noqa: F401  (registers the models)
from fastvit_analysis.models import REGISTERED_MODELS, create, model_kind

pytestmark = pytest.mark.usefixtures("one_thread")


EXPECTED_NAMES = {
    "alternet50_cifar", "alternet50_cifar_ref", "alternet50", "preact_resnet50_cifar", "vit_ti_cifar",
    "vit_ti_gap_cifar", "vit_ti_local_cifar", "pit_ti_cifar", "swin_ti_cifar", "demo_resnet", "demo_vit",
    "demo_alternet",
}

# name -> (tiny build kwargs, input size)
_TINY_ALTERNET = dict(widths=(4, 4, 8, 8), heads=(1, 1, 2, 2), dim_head=4, stem_width=8, window_size=2)
TINY = {
    "alternet50_cifar": (_TINY_ALTERNET, 16),
    "alternet50_cifar_ref": (_TINY_ALTERNET, 16),
    "alternet50": (_TINY_ALTERNET, 64),
    "preact_resnet50_cifar": (dict(widths=(4, 4, 8, 8), stem_width=8), 16),
    "vit_ti_cifar": (dict(img_size=8, embed_dim=24, depth=2), 8),
    "vit_ti_gap_cifar": (dict(img_size=8, embed_dim=24, depth=2), 8),
    "vit_ti_local_cifar": (dict(img_size=8, embed_dim=24, depth=2), 8),
    "pit_ti_cifar": (dict(img_size=16, base_dims=(8, 8, 8), depth=(1, 1, 1)), 16),
    "swin_ti_cifar": (dict(img_size=16, embed_dim=12, depths=(1, 1, 1, 1)), 16),
    "demo_resnet": ({}, 32),
    "demo_vit": ({}, 32),
    "demo_alternet": ({}, 32),
}


def test_registry_names():
    assert EXPECTED_NAMES <= set(REGISTERED_MODELS)
    for name in EXPECTED_NAMES:
        assert timm.is_model(name)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_forward_backward_tiny(name):
    kwargs, size = TINY[name]
    model = timm.create_model(name, num_classes=7, **kwargs)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert model.fastvit_spec == {"model_name": name, "model_kwargs": {"num_classes": 7, **kwargs}}


def _count(name, **kwargs):
    with torch.device("meta"):
        model = timm.create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


def _preact_bottleneck(c_in, w):
    """Parameters of one pre-activation bottleneck (BN affine 2 per channel, convs without bias)."""
    out = 4 * w
    n = 2 * c_in + c_in * w + 2 * w + 9 * w * w + 2 * w + w * out
    if c_in != out:  # first block of a stage: 1×1 projection shortcut
        n += c_in * out
    return n


def _msa_block(c, heads, dim_head=64, p=4):
    width = c // 4
    inner = heads * dim_head
    return (2 * c + c * width + 2 * width  # BN, 1×1 conv C->C/4, BN
            + width * inner + width * 2 * inner  # q, k, v (1×1, no bias)
            + inner * c + c  # output 1×1 conv with bias
            + (2 * p - 1) ** 2)  # one relative-position bias table shared by the heads


def _alternet_count(depths, msa, num_classes, p, stem="cifar"):
    """docs/methods.md §4: stage of n blocks with m MSA blocks = C·(n−2m) then (C, M)·m; widths 64..512; heads 3..24."""
    total = 3 * 64 * (9 if stem == "cifar" else 49)
    c = 64
    for n, m, w, h in zip(depths, msa, (64, 128, 256, 512), (3, 6, 12, 24)):
        for kind in ["C"] * (n - 2 * m) + ["C", "M"] * m:
            if kind == "C":
                total += _preact_bottleneck(c, w)
                c = 4 * w
            else:
                total += _msa_block(c, h, p=p)
    return total + 2 * c + c * num_classes + num_classes  # head BN + Linear


def test_alternet50_cifar_param_count():
    expected = _alternet_count((3, 4, 6, 4), (0, 1, 1, 2), 100, p=4)
    assert _count("alternet50_cifar") == expected
    assert abs(expected / 1e6 - 33.0) < 0.05  # the paper's ≈ 33.0M
    assert _count("alternet50_cifar_ref") == _alternet_count((3, 4, 6, 4), (0, 1, 3, 2), 100, p=4)
    assert _count("alternet50") == _alternet_count((3, 4, 6, 4), (0, 1, 3, 2), 1000, p=7, stem="imagenet")
    assert _count("preact_resnet50_cifar") == _alternet_count((3, 4, 6, 3), (0, 0, 0, 0), 100, p=4)


def _vit_count(dim, depth, tokens, num_classes, patch, cls=True, mlp_ratio=4):
    block = 2 * 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * mlp_ratio * dim * dim + \
        mlp_ratio * dim + dim
    embed = 3 * patch * patch * dim + dim + (tokens + cls) * dim + cls * dim
    return embed + depth * block + 2 * dim + dim * num_classes + num_classes


def test_vit_param_counts():
    assert _count("vit_ti_cifar") == _vit_count(192, 12, 256, 100, patch=2)
    assert _count("vit_ti_gap_cifar") == _vit_count(192, 12, 256, 100, patch=2, cls=False)
    assert _count("vit_ti_local_cifar", window=5) == _count("vit_ti_cifar")
    assert _count("demo_vit") == _vit_count(96, 4, 64, 10, patch=4, mlp_ratio=2)
    assert 5.3e6 < _count("vit_ti_cifar") < 5.5e6
    # PiT-Ti / Swin-Ti: the timm architectures with the CIFAR patch sizes; counts of the published
    # models with their 224×224 position embedding and 1000-class head replaced by the CIFAR ones.
    assert 4.4e6 < _count("pit_ti_cifar") < 4.9e6
    assert 27e6 < _count("swin_ti_cifar") < 28e6


def test_demo_models_are_small():
    for name in ("demo_resnet", "demo_alternet"):
        assert 0.2e6 <= _count(name) <= 0.5e6
    assert _count("demo_vit") <= 1e6


def test_model_kinds():
    assert model_kind("alternet50_cifar") == "hybrid"
    assert model_kind("preact_resnet50_cifar") == "cnn"
    assert model_kind("vit_ti_cifar") == "vit"
    assert model_kind(create("demo_resnet")) == "cnn"
    assert model_kind(create("demo_vit")) == "vit"
    assert model_kind(create("demo_alternet")) == "hybrid"
    assert model_kind(timm.create_model("resnet10t")) == "cnn"


def test_unknown_model_errors():
    with pytest.raises(ValueError, match="unknown model 'alternet50_cifr'.*alternet50_cifar"):
        create("alternet50_cifr")
    with pytest.raises(ValueError, match="window"):
        create("vit_ti_local_cifar", window=4)
    with pytest.raises(ValueError, match="pretrained"):
        timm.create_model("demo_resnet", pretrained=True)
    with pytest.raises(ValueError, match="msa_blocks"):
        create("demo_alternet", msa_blocks=(0, 2, 1))
    with pytest.raises(ValueError, match="window_size=4"):
        create("alternet50_cifar", img_size=24)
    assert create("demo_alternet", img_size=32).img_size == 32
    # the window follows img_size (the last stage's map side): 24×24 gets window 3, and runs
    for size, window in ((32, 4), (24, 3), (16, 2)):
        net = create("demo_alternet", img_size=size).eval()
        assert {m.window_size for m in net.modules() if hasattr(m, "rel_index")} == {window}
        assert net(torch.randn(1, 3, size, size)).shape == (1, 10)
    assert create("demo_vit", img_size=24)(torch.randn(1, 3, 24, 24)).shape == (1, 10)
    with pytest.raises(FileNotFoundError, match="does_not_exist.pt"):
        create("/tmp/does_not_exist.pt")

"""filter_normalized_directions: norms per filter / per fibre, zeroing rules, seeds, bad input."""
import pytest
import torch
from torch import nn

from fastvit_analysis import filter_normalized_directions
from fastvit_analysis.landscape.directions import POSITION_EMBEDDING_KEYWORDS, zeroed_parameter_names


class PosNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, 4, 6))
        self.attn_relative_position_bias_table = nn.Parameter(torch.randn(7, 2))
        self.conv = nn.Conv2d(3, 5, 3)
        self.norm = nn.LayerNorm(6)
        self.gn = nn.GroupNorm(1, 5)
        self.fc = nn.Linear(6, 4)
        self.frozen = nn.Linear(6, 6)
        self.frozen.weight.requires_grad_(False)
        self.register_buffer("stat", torch.ones(3, 3))


class FakeNorm2d(nn.Module):  # a norm layer known only by its class name (like timm's)
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4))


def test_filter_norms_match_weight_filter_norms():
    torch.manual_seed(1)
    m = PosNet()
    for d in filter_normalized_directions(m, n=2, norm="filter", seed=3):
        for name in ("conv.weight", "fc.weight"):
            w = dict(m.named_parameters())[name]
            dn = d[name].flatten(1).norm(dim=1)
            torch.testing.assert_close(dn, w.detach().flatten(1).norm(dim=1), rtol=1e-5, atol=1e-6)


def test_axis0_norms_match_weight_fibre_norms():
    m = PosNet()
    (d,) = filter_normalized_directions(m, n=1, norm="axis0", seed=0)
    for name in ("conv.weight", "fc.weight"):
        w = dict(m.named_parameters())[name].detach()
        torch.testing.assert_close(d[name].norm(dim=0), w.norm(dim=0), rtol=1e-5, atol=1e-6)
        # axis0 is a different rule: per-filter norms do not match in general
        assert not torch.allclose(d[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-3)


def test_zeroed_tensors_and_buffers_and_frozen():
    m = PosNet()
    (d,) = filter_normalized_directions(m, n=1)
    expected_zero = {"pos_embed", "attn_relative_position_bias_table", "conv.bias", "norm.weight", "norm.bias",
                     "gn.weight", "gn.bias", "fc.bias", "frozen.bias"}
    assert set(zeroed_parameter_names(m)) == expected_zero
    for name in expected_zero:
        assert torch.count_nonzero(d[name]) == 0, name
    assert torch.count_nonzero(d["conv.weight"]) == d["conv.weight"].numel()
    assert "stat" not in d and "frozen.weight" not in d  # buffers and frozen parameters never move
    assert set(d) == {n for n, p in m.named_parameters() if p.requires_grad}
    assert "pos_embed" in POSITION_EMBEDDING_KEYWORDS


def test_norm_layer_by_class_name_and_extra_exclude():
    m = nn.Sequential(FakeNorm2d(), nn.Linear(4, 4))
    assert zeroed_parameter_names(m) == ["0.weight", "1.bias"]
    assert "1.weight" in zeroed_parameter_names(m, exclude=["1"])


def test_include_bias_bn_matches_tensor_norms():
    m = PosNet()
    (d,) = filter_normalized_directions(m, n=1, include_bias_bn=True, seed=2)
    params = dict(m.named_parameters())
    for name in zeroed_parameter_names(m):
        torch.testing.assert_close(d[name].norm(), params[name].detach().norm(), rtol=1e-5, atol=1e-6)
    (d0,) = filter_normalized_directions(m, n=1, include_bias_bn=False, seed=2)
    torch.testing.assert_close(d["conv.weight"], d0["conv.weight"])  # same stream for the others


def test_seeds_reproduce_and_differ():
    m = PosNet()
    a = filter_normalized_directions(m, n=2, seed=5)
    b = filter_normalized_directions(m, n=2, seed=5)
    c = filter_normalized_directions(m, n=2, seed=6)
    for x, y in zip(a, b):
        for k in x:
            assert torch.equal(x[k], y[k])
    assert not torch.equal(a[0]["conv.weight"], c[0]["conv.weight"])
    assert not torch.equal(a[0]["conv.weight"], a[1]["conv.weight"])
    state = torch.random.get_rng_state()
    filter_normalized_directions(m, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_zero_weight_filter_gives_zero_direction():
    m = nn.Linear(3, 2)
    with torch.no_grad():
        m.weight[0] = 0
    (d,) = filter_normalized_directions(m, n=1)
    assert torch.count_nonzero(d["weight"][0]) == 0 and torch.isfinite(d["weight"]).all()


def test_bad_inputs():
    m = PosNet()
    with pytest.raises(ValueError, match="norm"):
        filter_normalized_directions(m, norm="layer")
    with pytest.raises(ValueError, match="n:"):
        filter_normalized_directions(m, n=0)
    with pytest.raises(TypeError, match="model"):
        filter_normalized_directions({"w": torch.ones(2, 2)})
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        filter_normalized_directions(frozen)


def test_timm_vit_rules():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", img_size=8, patch_size=4, embed_dim=16, depth=1,
                            num_heads=2, num_classes=3)
    zeroed = set(zeroed_parameter_names(vit))
    assert "pos_embed" in zeroed and "cls_token" not in zeroed
    assert {"norm.weight", "blocks.0.norm1.weight", "head.bias"} <= zeroed
    assert "blocks.0.attn.qkv.weight" not in zeroed and "patch_embed.proj.weight" not in zeroed
    (d,) = filter_normalized_directions(vit, n=1)
    assert torch.count_nonzero(d["pos_embed"]) == 0
    torch.testing.assert_close(d["cls_token"].norm(), vit.cls_token.detach().norm(), rtol=1e-5, atol=1e-6)

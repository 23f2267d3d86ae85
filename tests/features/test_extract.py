"""Latent extraction: every model family, kinds, prefix tokens, user module names, errors."""
import pytest
import timm
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer

from fastvit_analysis import extract_features
from fastvit_analysis.features.extract import LatentExtractor, LatentSpec, latent_specs, to_feature_map

X = torch.randn(2, 3, 32, 32)


def tiny_vit(**kw):
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10, **kw)


def manual_vit_latents(vit, x):
    """Independent reference: re-run the ViT's blocks half by half."""
    z = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
    out = [z]
    for blk in vit.blocks:
        z = z + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(z))))
        out.append(z)
        z = z + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(z))))
        out.append(z)
    return out


@pytest.mark.parametrize("kw,prefix", [({}, 1), ({"class_token": False, "global_pool": "avg"}, 0),
                                       ({"reg_tokens": 2}, 3)])
def test_vit_latents_are_embedding_then_attn_and_mlp_halves(kw, prefix):
    vit = tiny_vit(**kw).eval()
    feats = extract_features(vit, X)
    assert list(feats) == ["patch_embed", "blocks.0:msa", "blocks.0:mlp", "blocks.1:msa", "blocks.1:mlp"]
    assert list(feats.kinds.values()) == ["embed", "msa", "mlp", "msa", "mlp"]
    assert set(feats.num_prefix_tokens.values()) == {prefix}
    with torch.no_grad():
        ref = manual_vit_latents(vit, X)
    for z, r in zip(feats.values(), ref):
        assert z.shape == (2, 16 + prefix, 32)
        torch.testing.assert_close(z, r, rtol=0, atol=0)
        assert to_feature_map(z, prefix).shape == (2, 32, 4, 4)


def test_vit_12_blocks_give_25_latents():
    vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=12, num_heads=2, num_classes=10)
    assert len(latent_specs(vit)) == 25


def test_deit_has_two_prefix_tokens():
    deit = timm.models.deit.VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=32, depth=1,
                                                        num_heads=2, num_classes=10)
    feats = extract_features(deit, X)
    assert set(feats.num_prefix_tokens.values()) == {2}
    assert feats["blocks.0:mlp"].shape == (2, 18, 32)


def test_timm_resnet_stem_then_blocks_with_downsampling():
    net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10,
                                    channels=(8, 8, 16, 16)).eval()
    feats = extract_features(net, X)
    assert list(feats) == ["maxpool", "layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert list(feats.kinds.values()) == ["embed", "conv", "downsample", "downsample", "downsample"]
    with torch.no_grad():
        z = net.maxpool(net.act1(net.bn1(net.conv1(X))))
        for name in ["layer1", "layer2", "layer3", "layer4"]:
            z = getattr(net, name)(z)
            torch.testing.assert_close(feats[f"{name}.0"], z)


def test_torchvision_resnet():
    net = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [2, 1, 1, 1], num_classes=10)
    feats = extract_features(net, X[:, :, :16, :16])
    assert list(feats)[:3] == ["maxpool", "layer1.0", "layer1.1"]
    assert feats.kinds["layer2.0"] == "downsample" and feats.kinds["layer1.1"] == "conv"
    assert feats["layer4.0"].shape == (2, 512, 1, 1)  # 16 -> 4 after the stem -> 1 after two more strides


def test_resnetv2():
    net = timm.models.resnetv2.ResNetV2([1, 1, 1, 1], channels=(16, 32, 64, 128), num_classes=10,
                                        norm_layer=timm.layers.BatchNormAct2d)
    feats = extract_features(net, X)
    assert list(feats)[:2] == ["stem", "stages.0.blocks.0"]
    assert feats.kinds["stages.1.blocks.0"] == "downsample"
    assert feats["stages.3.blocks.0"].shape == (2, 128, 1, 1)


def test_torchvision_vit():
    vit = torchvision.models.vision_transformer.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    feats = extract_features(vit, X)
    assert len(feats) == 5 and set(feats.num_prefix_tokens.values()) == {1}
    layer = vit.encoder.layers.encoder_layer_0
    with torch.no_grad():
        z = vit._process_input(X)
        z = torch.cat([vit.class_token.expand(2, -1, -1), z], dim=1) + vit.encoder.pos_embedding
        torch.testing.assert_close(feats["embedding"], z)
        attn, _ = layer.self_attention(layer.ln_1(z), layer.ln_1(z), layer.ln_1(z), need_weights=False)
        torch.testing.assert_close(feats["encoder.layers.encoder_layer_0:msa"], z + attn)
        torch.testing.assert_close(feats["encoder.layers.encoder_layer_0:mlp"], layer(z))


def test_pit_swin_convnext():
    pit = timm.models.pit.PoolingVisionTransformer(img_size=32, patch_size=4, stride=2, base_dims=[8, 8],
                                                   depth=[1, 1], heads=[2, 2], num_classes=10)
    feats = extract_features(pit, X)
    assert list(feats.kinds.values()) == ["embed", "msa", "mlp", "downsample", "msa", "mlp"]
    assert feats.num_prefix_tokens["transformers.1.blocks.0:msa"] == 1
    assert feats["transformers.1.pool"].ndim == 4

    swin = timm.models.swin_transformer.SwinTransformer(img_size=32, patch_size=2, window_size=4, embed_dim=16,
                                                        depths=(1, 1), num_heads=(2, 2), num_classes=10)
    feats = extract_features(swin, X)
    assert list(feats.kinds.values()) == ["embed", "msa", "mlp", "downsample", "msa", "mlp"]
    # NHWC stage outputs come back as (B, C, H, W)
    assert feats["layers.1.downsample"].shape == (2, 32, 8, 8)
    assert feats["layers.0.blocks.0:mlp"].shape == (2, 16, 16, 16)
    assert feats["layers.0.blocks.0:msa"].shape == (2, 256, 16)
    assert to_feature_map(feats["layers.0.blocks.0:msa"], 0).shape == (2, 16, 16, 16)

    convnext = timm.models.convnext.ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 16, 16), num_classes=10)
    feats = extract_features(convnext, X)
    assert list(feats)[:4] == ["stem", "stages.0.blocks.0", "stages.1.downsample", "stages.1.blocks.0"]
    assert feats.kinds["stages.1.downsample"] == "downsample" and feats.kinds["stages.0.blocks.0"] == "conv"


def test_alternet_extraction():
    alternet = pytest.importorskip("fastvit_analysis.models.alternet")
    net = timm.create_model("demo_alternet", num_classes=10).eval()
    blocks = [(s, b) for s, stage in enumerate(net.stages) for b in range(len(stage))]
    feats = extract_features(net, X)
    assert list(feats) == ["stem"] + [f"stages.{s}.{b}" for s, b in blocks]
    expected_kinds = ["embed"]
    for s, b in blocks:
        block = net.stages[s][b]
        if isinstance(block, alternet.MSABlock):
            expected_kinds.append("msa")
        elif b == 0 and s > 0:
            expected_kinds.append("downsample")
        else:
            expected_kinds.append("conv")
    assert list(feats.kinds.values()) == expected_kinds
    assert "msa" in expected_kinds and "conv" in expected_kinds
    with torch.no_grad():
        z = net.stem(X)
        for s, b in blocks:
            z = net.stages[s][b](z)
            torch.testing.assert_close(feats[f"stages.{s}.{b}"], z)
    assert feats[f"stages.{blocks[-1][0]}.{blocks[-1][1]}"].shape == z.shape


def test_user_module_names_kinds_override_and_errors():
    vit = tiny_vit()
    feats = extract_features(vit, X, layers=["blocks.0.attn", "blocks.1:mlp", "head"],
                             kinds={"head": "mlp"})
    assert list(feats) == ["blocks.0.attn", "blocks.1:mlp", "head"]
    assert feats.kinds == {"blocks.0.attn": "msa", "blocks.1:mlp": "mlp", "head": "mlp"}
    assert feats["head"].shape == (2, 10)
    with pytest.raises(ValueError, match="nope"):
        extract_features(vit, X, layers=["blocks.0.nope"])
    with pytest.raises(ValueError, match="kinds: unknown"):
        extract_features(vit, X, kinds={"xyz": "msa"})
    with pytest.raises(ValueError, match="kind of latent"):
        extract_features(vit, X, kinds={"blocks.0:msa": "attention"})
    with pytest.raises(TypeError, match="sequence"):
        extract_features(vit, X, layers="blocks.0")
    with pytest.raises(ValueError, match="no default latents"):
        extract_features(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), X)
    with pytest.raises(TypeError, match="nn.Module"):
        extract_features(lambda t: t, X)


def test_streaming_callback_keeps_nothing_and_counts_samples():
    net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10,
                                    channels=(8, 8, 8, 8))
    ex = LatentExtractor(net, ["layer1.0", LatentSpec("stem_out", "act1", "embed")])
    seen = []
    n = ex.stream([(X, torch.zeros(2)), (X[:1], torch.zeros(1))], lambda s, z: seen.append((s.name, z.shape[0])),
                  progress=False)
    # callbacks run in forward order, batch after batch
    assert n == 3 and seen == [("stem_out", 2), ("layer1.0", 2), ("stem_out", 1), ("layer1.0", 1)]
    assert ex.depths() == [0.0, 1.0]
    assert not net._forward_hooks and not net.act1._forward_hooks  # hooks removed


def test_spec_and_layout_errors():
    with pytest.raises(ValueError, match="capture"):
        LatentSpec("a", "a", capture="grad")
    with pytest.raises(ValueError, match="layout"):
        LatentSpec("a", "a", layout="chw")
    with pytest.raises(ValueError, match="not a square grid"):
        to_feature_map(torch.randn(2, 10, 4), 0)
    with pytest.raises(ValueError, match="map or"):
        to_feature_map(torch.randn(2, 4), 0)
    vit = tiny_vit()
    with pytest.raises(ValueError, match="not found"):
        extract_features(vit, X, layers=[LatentSpec("x", "blocks.9")])
    with pytest.raises(ValueError, match="unique"):
        extract_features(vit, X, layers=["blocks.0", "blocks.0"])
    # a user LatentSpec with NHWC layout is permuted to (B, C, H, W)
    swin = timm.models.swin_transformer.SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16,
                                                        depths=(1,), num_heads=(2,), num_classes=10)
    feats = extract_features(swin, X, layers=[LatentSpec("pe", "patch_embed", "embed", layout="nhwc")])
    assert feats["pe"].shape == (2, 16, 8, 8)


def test_module_running_twice_is_an_error():
    net = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10)
    with pytest.raises(ValueError, match="more than once"):
        extract_features(net, X[:, :, :16, :16], layers=["layer1.0.relu"])  # BasicBlock reuses its ReLU

"""patch_attention / unpatch_attention / attention_patched on timm, torchvision and AlterNet-style models."""
import warnings

import pytest
import timm
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

import fastvit_analysis
from fastvit_analysis.attention import patch as patch_module
from fastvit_analysis.attention.patch import attention_patched, is_patched, patch_attention, unpatch_attention

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts calls of fused_attention made by patched modules."""
    calls = []
    original = patch_module.fused_attention

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)
    monkeypatch.setattr(patch_module, "fused_attention", counted)
    return calls


def _tiny_timm_vit():
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                             num_classes=10).eval()


def _tiny_torchvision_vit():
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                                num_heads=2, hidden_dim=32, mlp_dim=64,
                                                num_classes=10).eval()


def _tiny_swin():
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56,
                             embed_dim=32, depths=(2, 2), num_heads=(2, 2), window_size=7,
                             num_classes=10).eval()


def _math_output(model, x):
    with sdpa_kernel(SDPBackend.MATH):
        return model(x)


def _hvp(model, x, y, tangent_seed=1):
    """Forward-over-reverse HVP of the cross-entropy w.r.t. all parameters (as curvature/ does)."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(tangent_seed)
    tangents = {name: torch.randn(p.shape, generator=gen) for name, p in params.items()}

    def loss(p):
        return nn.functional.cross_entropy(functional_call(model, p, (x,)), y)
    return jvp(grad(loss), (params,), (tangents,))[1]


def _assert_same_hvp(got, want, tol=1e-5):
    for name in want:
        scale = max(1.0, want[name].abs().max().item())
        torch.testing.assert_close(got[name], want[name], rtol=tol, atol=tol * scale, msg=name)


@pytest.mark.parametrize("build,n_attention,image", [
    (_tiny_timm_vit, 2, 32), (_tiny_torchvision_vit, 2, 32), (_tiny_swin, 4, 56)])
def test_patched_model_output_and_hvp_match_math_backend(build, n_attention, image, fused_calls):
    model = build()
    x = torch.randn(2, 3, image, image)
    y = torch.tensor([1, 7])
    want_out = _math_output(model, x)
    with sdpa_kernel(SDPBackend.MATH):
        want_hvp = _hvp(model, x, y)
    params_before = [id(p) for p in model.parameters()]

    assert patch_attention(model) == n_attention
    got_out = model(x)
    assert len(fused_calls) == n_attention
    torch.testing.assert_close(got_out, want_out, rtol=1e-5, atol=1e-5)
    _assert_same_hvp(_hvp(model, x, y), want_hvp)
    assert [id(p) for p in model.parameters()] == params_before

    assert unpatch_attention(model) == n_attention
    assert not any(is_patched(m) for m in model.modules())
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_timm_vit_tiny_default_config_patches_every_block():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                              patch_size=8, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    want = _math_output(model, x)
    assert patch_attention(model) == 12
    torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)
    assert patch_attention(model) == 0  # idempotent: nothing patched twice


def test_pit_and_deit_outputs_unchanged():
    for name, kwargs, image in (("pit_ti_224", {"img_size": 64}, 64),
                                ("deit_tiny_patch16_224", {"img_size": 32, "patch_size": 8}, 32)):
        model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
        x = torch.randn(1, 3, image, image)
        want = _math_output(model, x)
        assert patch_attention(model) > 0
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5, msg=name)


def test_convit_patches_mhsa_and_warns_on_gpsa(fused_calls):
    model = timm.create_model("convit_tiny", pretrained=False, img_size=32, patch_size=8,
                              embed_dim=16, num_heads=2, depth=2, local_up_to_layer=1,
                              num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    want = model(x)
    with pytest.warns(UserWarning, match="GPSA .* left unpatched"):
        assert patch_attention(model) == 1
    torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)
    assert len(fused_calls) == 1


class _LocalAttention(nn.Module):
    """Stand-in for AlterNet's local attention: dispatches on ``attention_impl`` itself."""

    def __init__(self):
        super().__init__()
        self.attention_impl = "math"

    def forward(self, x):
        return x


def test_attention_impl_modules_are_switched_and_restored():
    model = nn.Sequential(_LocalAttention(), nn.Linear(4, 4), _LocalAttention())
    assert patch_attention(model) == 2
    assert model[0].attention_impl == model[2].attention_impl == "fused"
    assert unpatch_attention(model) == 2
    assert model[0].attention_impl == model[2].attention_impl == "math"


def test_context_manager_restores_even_on_error():
    model = _tiny_timm_vit()
    original_flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    with pytest.raises(RuntimeError, match="boom"):
        with attention_patched(model) as n_patched:
            assert n_patched == 2
            assert all(is_patched(m) for m in model.modules() if hasattr(m, "fused_attn"))
            raise RuntimeError("boom")
    assert not any(is_patched(m) for m in model.modules())
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == original_flags


def test_context_manager_leaves_earlier_patches_alone():
    model = _tiny_timm_vit()
    patch_attention(model)
    with attention_patched(model) as n_patched:
        assert n_patched == 0
    assert all(is_patched(m) for m in model.modules() if hasattr(m, "fused_attn"))


def test_training_with_attention_dropout_falls_back_with_warning(fused_calls):
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                              attn_drop_rate=0.5, num_classes=10).train()
    patch_attention(model)
    with pytest.warns(UserWarning, match="attention dropout is active"):
        model(torch.randn(2, 3, 32, 32))
    assert not fused_calls
    model.eval()
    model(torch.randn(2, 3, 32, 32))
    assert len(fused_calls) == 1


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_with_masks(batch_first):
    mha = nn.MultiheadAttention(32, 2, batch_first=batch_first).eval()
    x = torch.randn(3, 5, 32) if batch_first else torch.randn(5, 3, 32)  # batch 3, length 5
    float_mask = torch.randn(5, 5)
    bool_mask = torch.rand(2 * 3, 5, 5) > 0.3  # (batch * heads, L, S)
    bool_mask[..., 0] = False  # every query sees at least one key (True = masked out in MHA)
    want = [mha(x, x, x, need_weights=False, attn_mask=m)[0] for m in (None, float_mask, bool_mask)]
    assert patch_attention(mha) == 1
    got = [mha(x, x, x, need_weights=False, attn_mask=m)[0] for m in (None, float_mask, bool_mask)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, weights = mha(x, x, x, need_weights=True)
    assert weights is not None and any("need_weights" in str(w.message) for w in caught)


def test_public_api_and_bad_input():
    assert fastvit_analysis.patch_attention is patch_attention
    for fn in (patch_attention, unpatch_attention):
        with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
            fn("vit_tiny")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        with attention_patched(None):
            pass


def test_hessian_spectrum_through_patched_vit_matches_math_backend():
    """Top-5 Hessian eigenvalues of a tiny timm ViT: patched (fused) == unpatched (math SDPA)."""
    spectrum = pytest.importorskip("fastvit_analysis.curvature.spectrum")
    model = _tiny_timm_vit()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 5, 9])
    loss_fn = nn.CrossEntropyLoss()
    with sdpa_kernel(SDPBackend.MATH):
        want = spectrum.hessian_spectrum(model, loss_fn, (x, y), top_k=5, tol=1e-5, seed=0,
                                         progress=False)
    with attention_patched(model) as n_patched:
        assert n_patched == 2
        got = spectrum.hessian_spectrum(model, loss_fn, (x, y), top_k=5, tol=1e-5, seed=0,
                                        progress=False)
    torch.testing.assert_close(torch.as_tensor(got.eigenvalues), torch.as_tensor(want.eigenvalues),
                               rtol=1e-4, atol=1e-6)


def test_timm_attention_masks_are_redirected_exactly(fused_calls):
    """timm Attention's SDPA call with boolean (True = attend) and additive masks."""
    from timm.layers import Attention
    attn = Attention(32, num_heads=2, qkv_bias=True).eval()
    x = torch.randn(2, 6, 32)
    bool_mask = torch.rand(2, 1, 6, 6) > 0.4
    bool_mask[..., 0] = True
    float_mask = torch.randn(6, 6)
    want = [_math_output(lambda t, m=m: attn(t, attn_mask=m), x) for m in (bool_mask, float_mask)]
    patch_attention(attn)
    got = [attn(x, attn_mask=m) for m in (bool_mask, float_mask)]
    assert len(fused_calls) == 2
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    with pytest.warns(UserWarning, match="causal attention"):
        attn(x, is_causal=True)

"""AlterNet's window attention and the local-attention ViT against direct loop formulas."""
import sys
import types

import pytest
import timm
import torch

import fastvit_analysis  # noqa: F401
from fastvit_analysis.models import AlterNet, LocalTokenAttention, MSABlock, PreActBottleneck, WindowAttention
from fastvit_analysis.models.alternet import relative_position_index
from fastvit_analysis.models.vit_cifar import local_attention_mask

pytestmark = pytest.mark.usefixtures("one_thread")



def _reference_window_attention(attn: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Loop over windows and positions: out[i] = Σ_j softmax_j(q_i·k_j·scale + B[Δrow, Δcol]) v_j."""
    b, _, h, w = x.shape
    p, heads, d = attn.window_size, attn.heads, attn.dim_head
    q = attn.to_q(x)
    k, v = attn.to_kv(x).split(heads * d, dim=1)
    table = attn.rel_pos_bias
    out = torch.zeros(b, heads * d, h, w, dtype=x.dtype)
    for bi in range(b):
        for wr in range(0, h, p):
            for wc in range(0, w, p):
                cells = [(wr + r, wc + c) for r in range(p) for c in range(p)]
                for hd in range(heads):
                    sl = slice(hd * d, (hd + 1) * d)
                    for (ri, ci) in cells:
                        logits = torch.stack([
                            (q[bi, sl, ri, ci] * k[bi, sl, rj, cj]).sum() * d ** -0.5
                            + table[rj - ri + p - 1, cj - ci + p - 1] for (rj, cj) in cells])
                        weights = torch.softmax(logits, dim=0)
                        out[bi, sl, ri, ci] = sum(wt * v[bi, sl, rj, cj] for wt, (rj, cj) in zip(weights, cells))
    return attn.to_out(out)


def test_window_attention_matches_loop_reference():
    torch.manual_seed(1)
    attn = WindowAttention(5, 6, window_size=2, heads=2, dim_head=3).double()
    with torch.no_grad():
        attn.rel_pos_bias.normal_()  # make the bias matter
    x = torch.randn(2, 5, 4, 6, dtype=torch.double)
    torch.testing.assert_close(attn(x), _reference_window_attention(attn, x))


def test_relative_position_index():
    p = 3
    idx = relative_position_index(p)
    for i in range(p * p):
        for j in range(p * p):
            dr, dc = j // p - i // p, j % p - i % p
            assert idx[i, j] == (dr + p - 1) * (2 * p - 1) + (dc + p - 1)


def test_window_attention_second_order():
    attn = WindowAttention(2, 2, window_size=2, heads=1, dim_head=2).double()
    x = torch.randn(1, 2, 2, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: attn(t), (x,))


def test_window_attention_rejects_bad_sizes():
    attn = WindowAttention(4, window_size=4, heads=1, dim_head=4)
    with pytest.raises(ValueError, match="not divisible by window_size=4"):
        attn(torch.randn(1, 4, 6, 8))
    with pytest.raises(ValueError, match="attention_impl"):
        attn.attention_impl = "flash"


@pytest.fixture
def fake_fused(monkeypatch):
    """Stand-in for fastvit_analysis.attention.fused that records the call and computes the math path."""
    calls = []

    def fused_attention(q, k, v, *, scale, attn_bias=None):
        calls.append((q.shape, k.shape, v.shape, scale, None if attn_bias is None else attn_bias.shape))
        logits = q @ k.transpose(-2, -1) * scale
        return torch.softmax(logits + attn_bias, dim=-1) @ v

    module = types.ModuleType("fastvit_analysis.attention.fused")
    module.fused_attention = fused_attention
    monkeypatch.setitem(sys.modules, "fastvit_analysis.attention.fused", module)
    return calls


def test_window_attention_fused_contract(fake_fused):
    attn = WindowAttention(4, 8, window_size=2, heads=3, dim_head=5)
    x = torch.randn(2, 4, 4, 6)
    expected = attn(x)
    attn.attention_impl = "fused"
    torch.testing.assert_close(attn(x), expected)
    # q, k, v: (B·windows, heads, p·p, dim_head); bias (heads, p·p, p·p)
    assert fake_fused == [((12, 3, 4, 5),) * 3 + (5 ** -0.5, (3, 4, 4))]


def test_local_attention_mask_brute_force():
    for grid, k in [(4, 3), (5, 5), (6, 8), (3, 1)]:
        mask = local_attention_mask(grid, k, num_prefix_tokens=1)
        assert mask.shape == (1 + grid * grid,) * 2
        assert mask[0].all() and mask[:, 0].all()
        lo, hi = -((k - 1) // 2), k // 2
        for i in range(grid * grid):
            for j in range(grid * grid):
                dr, dc = j // grid - i // grid, j % grid - i % grid
                assert mask[1 + i, 1 + j] == (lo <= dr <= hi and lo <= dc <= hi)


def test_local_vit_attention_is_local():
    model = timm.create_model("vit_ti_local_cifar", window=3, img_size=8, patch_size=2, embed_dim=12, depth=1)
    attn = model.blocks[0].attn
    assert isinstance(attn, LocalTokenAttention)
    x = torch.randn(1, 17, 12, requires_grad=True)  # class token + 4×4 grid
    out = attn(x)
    # token (1, 1) of the grid sees rows/cols 0..2 only: no gradient from token (3, 3)
    g = torch.autograd.grad(out[0, 1 + 1 * 4 + 1].sum(), x)[0]
    assert g[0, 1 + 3 * 4 + 3].abs().max() == 0
    assert g[0, 1 + 2 * 4 + 2].abs().max() > 0
    assert g[0, 0].abs().max() > 0  # the class token is always visible


def test_local_vit_fused_contract(fake_fused):
    model = timm.create_model("vit_ti_local_cifar", window=5, img_size=8, patch_size=2, embed_dim=12, depth=1)
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    model.blocks[0].attn.attention_impl = "fused"
    torch.testing.assert_close(model(x), expected)
    assert fake_fused[0][0] == (2, 3, 17, 4) and fake_fused[0][4] == (3, 17, 17)


def test_alternet_stage_layout():
    model = AlterNet((3, 4, 6, 4), (0, 1, 1, 2), widths=(4, 4, 4, 4), heads=(1, 1, 1, 1), dim_head=2,
                     stem="cifar", window_size=2)
    kinds = [["M" if isinstance(b, MSABlock) else "C" for b in stage] for stage in model.stages]
    assert kinds == [list("CCC"), list("CCCM"), list("CCCCCM"), list("CMCM")]
    assert all(isinstance(b, PreActBottleneck) for stage in model.stages for b in stage if not isinstance(b, MSABlock))
    # heads per stage and window size as built
    msa = [b for stage in model.stages for b in stage if isinstance(b, MSABlock)]
    assert all(b.attn.window_size == 2 for b in msa)
    # linearly increasing DropPath rate
    model = AlterNet((2, 2), (0, 1), widths=(4, 4), heads=(1, 1), dim_head=2, stem="cifar", window_size=2,
                     drop_path_rate=0.3)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for stage in model.stages for b in stage]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_alternet_eval_is_deterministic_and_batch_independent():
    model = timm.create_model("demo_alternet").eval()
    x = torch.randn(3, 3, 32, 32)
    full = model(x)
    torch.testing.assert_close(model(x[:1]), full[:1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,kwargs,size", [
    ("demo_alternet", dict(widths=(4, 4, 8, 8), stem_width=4, dim_head=4, window_size=2), 16),
    ("vit_ti_local_cifar", dict(img_size=8, embed_dim=12, depth=1), 8),
])
def test_hvp_forward_over_reverse_matches_double_backward(name, kwargs, size):
    """The "math" attention paths admit jvp(grad(loss)), the HVP route of fastvit_analysis.curvature."""
    from torch.func import functional_call, grad, jvp

    model = timm.create_model(name, **kwargs).eval()
    params = {k: p.detach() for k, p in model.named_parameters()}
    x, y = torch.randn(3, 3, size, size), torch.tensor([0, 3, 9])

    def loss(p):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    v = {k: torch.randn_like(t) for k, t in params.items()}
    _, hv = jvp(grad(loss), (params,), (v,))
    leaves = {k: t.clone().requires_grad_() for k, t in params.items()}
    g = torch.autograd.grad(loss(leaves), list(leaves.values()), create_graph=True)
    expected = torch.autograd.grad(sum((gi * v[k]).sum() for gi, k in zip(g, leaves)), list(leaves.values()))
    for k, e in zip(leaves, expected):
        torch.testing.assert_close(hv[k], e, atol=1e-5, rtol=1e-4)

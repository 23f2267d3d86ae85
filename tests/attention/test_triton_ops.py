"""The Triton kernels (kernels/attention_*.py) against SDPA's math backend.

Without CUDA they run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1):
tiny shapes, float32 only, one autotune config.  The same tests run on a GPU, where they also
exercise the compiled kernels.
"""
import pytest
import torch
from torch.func import grad, jvp, vmap

from fastvit_analysis.attention import _triton_ops
from fastvit_analysis.attention.fused import fused_attention
from fastvit_analysis.attention.reference import math_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# N = 1 (single token), 7 (< block), 17 (block + 1: a masked tail in both loops).
CASES = [(1, 16, None), (7, 16, "heads"), (17, 16, None), (17, 32, "full")]


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(n, d, bias_kind, n_k=None):
    n_k = n if n_k is None else n_k
    q = torch.randn(1, 2, n, d, device=DEVICE)
    k = torch.randn(1, 2, n_k, d, device=DEVICE)
    v = torch.randn(1, 2, n_k, d, device=DEVICE)
    shapes = {None: None, "heads": (2, n, n_k), "full": (1, 2, n, n_k)}
    bias = None if bias_kind is None else torch.randn(shapes[bias_kind], device=DEVICE)
    return (q, k, v) if bias is None else (q, k, v, bias)


def _triton(*a):
    return fused_attention(*a[:3], attn_bias=a[3] if len(a) > 3 else None, backend="triton")


def _math(*a):
    return math_attention(*a[:3], attn_bias=a[3] if len(a) > 3 else None)


def _loss(attention):
    def loss(*a):
        out = attention(*a)
        return (out.sin() * 0.5).sum() + (out ** 2).sum() * 0.25
    return loss


def _hvp(loss, primals, tangents):
    argnums = tuple(range(len(primals)))
    return jvp(lambda *p: grad(loss, argnums=argnums)(*p), primals, tangents)[1]


def _assert_close(actual, expected, tol=1e-5):
    for a, e in zip(actual, expected):
        scale = max(1.0, e.abs().max().item())
        torch.testing.assert_close(a, e, rtol=tol, atol=tol * scale)


@pytest.fixture
def count_launches(monkeypatch):
    """Proves the Triton path ran: counts calls into the kernel launchers."""
    from fastvit_analysis.kernels import attention_bwd, attention_fwd
    counts = {"fwd": 0, "fwd_jvp": 0, "bwd": 0, "bwd_jvp": 0}
    for module, name, key in ((attention_fwd, "attention_fwd", "fwd"),
                              (attention_fwd, "attention_fwd_jvp", "fwd_jvp"),
                              (attention_bwd, "attention_bwd", "bwd"),
                              (attention_bwd, "attention_bwd_jvp", "bwd_jvp")):
        original = getattr(module, name)

        def counted(*args, _original=original, _key=key):
            counts[_key] += 1
            return _original(*args)
        monkeypatch.setattr(module, name, counted)
    return counts


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_forward(n, d, bias_kind, count_launches):
    primals = _inputs(n, d, bias_kind)
    _assert_close([_triton(*primals)], [_math(*primals)])
    assert count_launches["fwd"] == 1


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_grads(n, d, bias_kind, count_launches):
    primals = _inputs(n, d, bias_kind)
    argnums = tuple(range(len(primals)))
    _assert_close(grad(_loss(_triton), argnums=argnums)(*primals),
                  grad(_loss(_math), argnums=argnums)(*primals))
    assert count_launches["bwd"] == 1


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_jvp(n, d, bias_kind):
    primals = _inputs(n, d, bias_kind)
    tangents = tuple(torch.randn_like(p) for p in primals)
    _assert_close(jvp(_triton, primals, tangents), jvp(_math, primals, tangents))


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_forward_over_reverse(n, d, bias_kind, count_launches):
    primals = _inputs(n, d, bias_kind)
    tangents = tuple(torch.randn_like(p) for p in primals)
    _assert_close(_hvp(_loss(_triton), primals, tangents), _hvp(_loss(_math), primals, tangents))
    assert count_launches["bwd_jvp"] == 1 and count_launches["fwd_jvp"] >= 1


@pytest.mark.parametrize("n,d,bias_kind", [(7, 16, "heads"), (17, 16, None)])
def test_double_backward(n, d, bias_kind):
    primals = _inputs(n, d, bias_kind)
    directions = [torch.randn_like(p) for p in primals]

    def double_backward(attention):
        leaves = [p.clone().requires_grad_() for p in primals]
        grads = torch.autograd.grad(_loss(attention)(*leaves), leaves, create_graph=True)
        return torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, directions)), leaves)

    _assert_close(double_backward(_triton), double_backward(_math))


@pytest.mark.parametrize("n,d,bias_kind", [(7, 16, "heads"), (17, 16, None), (5, 16, "full")])
def test_vmap_over_tangents(n, d, bias_kind):
    primals = _inputs(n, d, bias_kind)
    batched = tuple(torch.randn(2, *p.shape, device=DEVICE) for p in primals)
    got = vmap(lambda *t: _hvp(_loss(_triton), primals, t))(*batched)
    want = vmap(lambda *t: _hvp(_loss(_math), primals, t))(*batched)
    _assert_close(got, want)


def test_vmap_over_primals_per_sample_gradients():
    q, k, v, bias = _inputs(7, 16, "heads")
    q, k, v = (t.expand(3, *t.shape[1:]).clone() + torch.randn(3, 1, 1, 1, device=DEVICE)
               for t in (q, k, v))
    per_sample = lambda att: vmap(grad(  # noqa: E731
        lambda q, k, v, b: _loss(att)(q[None], k[None], v[None], b), argnums=(0, 1, 2, 3)),
        in_dims=(0, 0, 0, None))
    _assert_close(per_sample(_triton)(q, k, v, bias), per_sample(_math)(q, k, v, bias))


def test_cross_attention_and_broadcast_bias():
    q, k, v = _inputs(5, 16, None, n_k=19)
    bias = torch.randn(1, 1, 1, 19, device=DEVICE, requires_grad=True)
    primals = (q, k, v, bias)
    _assert_close(grad(_loss(_triton), argnums=(0, 3))(*primals),
                  grad(_loss(_math), argnums=(0, 3))(*primals))


def test_custom_ops_fake_impls():
    """Schema and FakeTensor (meta) implementations agree with the real kernels."""
    q, k, v, bias = _inputs(7, 16, "heads")
    for op, args in (
        (_triton_ops.attention_fwd_op, (q, k, v, bias, 0.25)),
        (_triton_ops.attention_bwd_jvp_op, (q, k, v, bias, torch.randn_like(q), 0.25, True,
                                            torch.randn_like(q), None, torch.randn_like(v),
                                            torch.randn_like(bias), torch.randn_like(q))),
    ):
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.skipif(DEVICE == "cuda", reason="CPU-only dtype guard")
def test_triton_rejects_float64():
    x = torch.randn(1, 1, 3, 16, dtype=torch.float64)
    with pytest.raises(TypeError, match="triton backend supports float32"):
        fused_attention(x, x, x, backend="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [197, 1024])
def test_gpu_half_precision(n, dtype):
    q, k, v = (torch.randn(2, 4, n, 64, device="cuda", dtype=dtype) for _ in range(3))
    bias = torch.randn(4, n, n, device="cuda", dtype=dtype)
    tangents = tuple(torch.randn_like(p) for p in (q, k, v, bias))
    got = _hvp(_loss(_triton), (q, k, v, bias), tangents)
    want = _hvp(_loss(_math), tuple(p.float() for p in (q, k, v, bias)),
                tuple(t.float() for t in tangents))
    for a, e in zip(got, want):
        rel = (a.float() - e).norm() / e.norm()
        assert rel < 3e-2, rel
    _assert_close([_triton(q, k, v, bias).float()], [_math(q.float(), k.float(), v.float(), bias.float())],
                  tol=2e-2)

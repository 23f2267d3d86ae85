"""Fully masked query rows (every key -inf in the additive bias): fused_attention outputs 0 there, like
SDPA, and gradients, JVPs, HVPs and double backward stay finite and equal to the math reference's, in the
composite torch path and in the Triton kernels (TRITON_INTERPRET=1 on CPU: tiny fp32 shapes)."""
import pytest
import torch
from torch.func import grad, jvp

from fastvit_analysis.attention.fused import fused_attention
from fastvit_analysis.attention.reference import math_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.usefixtures("one_thread")
INF = float("inf")
# torch: 8-key blocks (3 blocks); triton: the interpreter's 16-key blocks (2 blocks)
BACKENDS = [("eager", 8), ("triton", None)]


def masked_inputs(n=20, d=16):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, d, generator=g).to(DEVICE) for _ in range(3))
    bias = torch.randn(1, 2, n, n, generator=g)
    bias[:, :, 3, :] = -INF        # fully masked in both heads
    bias[:, 1, 7, :] = -INF        # fully masked in one head
    bias[:, :, 5, :16] = -INF      # the whole first key block masked, later keys visible
    bias[:, :, 9, ::2] = -INF      # partly masked
    return q, k, v, bias.to(DEVICE)


def attention(backend, block):
    kw = {} if block is None else {"block": block}
    return lambda q, k, v, b: fused_attention(q, k, v, attn_bias=b, backend=backend, **kw)


def reference(q, k, v, b):
    return math_attention(q, k, v, attn_bias=b)


def loss_of(fn):
    def loss(q, k, v, b):
        out = fn(q, k, v, b)
        return (out.sin() * 0.5).sum() + (out ** 2).sum() * 0.25
    return loss


def assert_close_finite(actual, expected, tol=1e-5):
    for a, e in zip(actual, expected):
        assert torch.isfinite(a).all(), "non-finite values"
        scale = max(1.0, e.abs().max().item())
        torch.testing.assert_close(a, e, rtol=tol, atol=tol * scale)


def finite_tangents(primals):
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(p.shape, generator=g).to(DEVICE) for p in primals)


@pytest.mark.parametrize("backend,block", BACKENDS)
def test_masked_rows_forward_is_zero(backend, block):
    primals = masked_inputs()
    out = attention(backend, block)(*primals)
    ref = reference(*primals)
    assert torch.equal(out[:, :, 3], torch.zeros_like(out[:, :, 3])) and not out[:, 1, 7].any()
    assert_close_finite([out], [ref])


@pytest.mark.parametrize("backend,block", BACKENDS)
def test_masked_rows_gradients(backend, block):
    primals = masked_inputs()
    got = grad(loss_of(attention(backend, block)), argnums=(0, 1, 2, 3))(*primals)
    want = grad(loss_of(reference), argnums=(0, 1, 2, 3))(*primals)
    assert_close_finite(got, want)


@pytest.mark.parametrize("backend,block", BACKENDS)
def test_masked_rows_jvp(backend, block):
    primals = masked_inputs()
    tangents = finite_tangents(primals)
    assert_close_finite(jvp(attention(backend, block), primals, tangents), jvp(reference, primals, tangents))


@pytest.mark.parametrize("backend,block", BACKENDS)
def test_masked_rows_jvp_of_backward(backend, block):
    primals = masked_inputs()
    tangents = finite_tangents(primals)

    def hvp(fn):
        return jvp(lambda *p: grad(loss_of(fn), argnums=(0, 1, 2, 3))(*p), primals, tangents)[1]

    assert_close_finite(hvp(attention(backend, block)), hvp(reference))


@pytest.mark.parametrize("backend,block", BACKENDS)
def test_masked_rows_double_backward(backend, block):
    primals = masked_inputs()
    directions = finite_tangents(primals)

    def double_backward(fn):
        leaves = [p.clone().requires_grad_() for p in primals]
        grads = torch.autograd.grad(loss_of(fn)(*leaves), leaves, create_graph=True)
        return torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, directions)), leaves)

    assert_close_finite(double_backward(attention(backend, block)), double_backward(reference))

"""fused_attention (CPU composite path) against SDPA's math backend and exact Hessians."""
import pytest
import torch
import torch.utils._python_dispatch
import torch.utils._pytree
from torch.func import grad, jvp, vmap

from fastvit_analysis.attention.fused import fused_attention
from fastvit_analysis.attention.reference import math_attention

# (N, D, bias kind): every N of the issue, every supported D, with and without bias.
CASES = [
    (1, 16, None), (1, 32, "heads"),
    (7, 16, None), (7, 64, "heads"), (7, 16, "batch_keys"),
    (64, 32, None), (64, 16, "heads"),
    (65, 64, None), (65, 16, "heads"), (65, 128, "full"),
    (197, 64, None), (197, 16, "heads"),
]
BATCH, HEADS = 2, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(n, d, bias_kind, dtype=torch.float32, n_k=None):
    n_k = n if n_k is None else n_k
    q = torch.randn(BATCH, HEADS, n, d, dtype=dtype)
    k = torch.randn(BATCH, HEADS, n_k, d, dtype=dtype)
    v = torch.randn(BATCH, HEADS, n_k, d, dtype=dtype)
    shapes = {None: None, "heads": (HEADS, n, n_k), "batch_keys": (BATCH, 1, 1, n_k),
              "full": (BATCH, HEADS, n, n_k)}
    bias = None if bias_kind is None else torch.randn(shapes[bias_kind], dtype=dtype)
    return q, k, v, bias


def _loss(attention, block=None):
    """A scalar that is nonlinear in the output, so the cotangent dO depends on the inputs."""
    kwargs = {} if block is None else {"block": block}

    def loss(q, k, v, bias=None):
        out = attention(q, k, v, attn_bias=bias, **kwargs)
        return (out.sin() * 0.5).sum() + (out ** 2).sum() * 0.25
    return loss


def _primals(q, k, v, bias):
    return (q, k, v) if bias is None else (q, k, v, bias)


def _assert_close(actual, expected, tol=1e-5):
    for a, e in zip(actual, expected):
        scale = max(1.0, e.abs().max().item())
        torch.testing.assert_close(a, e, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_forward_matches_math(n, d, bias_kind):
    q, k, v, bias = _inputs(n, d, bias_kind)
    _assert_close([fused_attention(q, k, v, attn_bias=bias, block=32)],
                  [math_attention(q, k, v, attn_bias=bias)])


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_grads_match_math(n, d, bias_kind):
    primals = _primals(*_inputs(n, d, bias_kind))
    argnums = tuple(range(len(primals)))
    got = grad(_loss(fused_attention, block=32), argnums=argnums)(*primals)
    want = grad(_loss(math_attention), argnums=argnums)(*primals)
    _assert_close(got, want)


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_jvp_matches_math(n, d, bias_kind):
    primals = _primals(*_inputs(n, d, bias_kind))
    tangents = tuple(torch.randn_like(p) for p in primals)
    f = lambda *a: fused_attention(*a[:3], attn_bias=a[3] if len(a) > 3 else None, block=32)  # noqa: E731
    g = lambda *a: math_attention(*a[:3], attn_bias=a[3] if len(a) > 3 else None)  # noqa: E731
    out_f, t_f = jvp(f, primals, tangents)
    out_g, t_g = jvp(g, primals, tangents)
    _assert_close([out_f, t_f], [out_g, t_g])


def _hvp(loss, primals, tangents):
    argnums = tuple(range(len(primals)))
    return jvp(lambda *p: grad(loss, argnums=argnums)(*p), primals, tangents)[1]


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_forward_over_reverse_matches_math(n, d, bias_kind):
    primals = _primals(*_inputs(n, d, bias_kind))
    tangents = tuple(torch.randn_like(p) for p in primals)
    _assert_close(_hvp(_loss(fused_attention, block=32), primals, tangents),
                  _hvp(_loss(math_attention), primals, tangents))


@pytest.mark.parametrize("n,d,bias_kind", CASES)
def test_double_backward_matches_math(n, d, bias_kind):
    q, k, v, bias = _inputs(n, d, bias_kind)
    primals = _primals(q, k, v, bias)
    directions = [torch.randn_like(p) for p in primals]

    def double_backward(loss):
        leaves = [p.clone().requires_grad_() for p in primals]
        grads = torch.autograd.grad(loss(*leaves), leaves, create_graph=True)
        dot = sum((g * u).sum() for g, u in zip(grads, directions))
        return torch.autograd.grad(dot, leaves)

    _assert_close(double_backward(_loss(fused_attention, block=32)),
                  double_backward(_loss(math_attention)))


@pytest.mark.parametrize("n,d,bias_kind", [(7, 16, "heads"), (65, 32, None), (197, 16, "heads")])
def test_vmap_over_tangents(n, d, bias_kind):
    primals = _primals(*_inputs(n, d, bias_kind))
    batched = tuple(torch.randn(4, *p.shape) for p in primals)
    got = vmap(lambda *t: _hvp(_loss(fused_attention, block=32), primals, t))(*batched)
    want = vmap(lambda *t: _hvp(_loss(math_attention), primals, t))(*batched)
    _assert_close(got, want)
    # vmap of the forward JVP alone, too
    f = lambda *a: fused_attention(*a[:3], attn_bias=a[3] if len(a) > 3 else None)  # noqa: E731
    g = lambda *a: math_attention(*a[:3], attn_bias=a[3] if len(a) > 3 else None)  # noqa: E731
    _assert_close(vmap(lambda *t: jvp(f, primals, t)[1])(*batched),
                  vmap(lambda *t: jvp(g, primals, t)[1])(*batched))


@pytest.mark.parametrize("n,bias_kind", [(1, "heads"), (5, None), (9, "heads")])
def test_gradcheck_and_gradgradcheck_float64(n, bias_kind):
    q, k, v, bias = _inputs(n, 16, bias_kind, dtype=torch.float64)
    q, k, v = (t[:1, :2] for t in (q, k, v))
    if bias is not None:
        bias = bias[:2]
    primals = tuple(p.clone().requires_grad_() for p in _primals(q, k, v, bias))
    f = lambda *a: fused_attention(*a[:3], attn_bias=a[3] if len(a) > 3 else None, block=4)  # noqa: E731
    assert torch.autograd.gradcheck(f, primals, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, primals, fast_mode=True)
    assert torch.autograd.gradcheck(f, primals, check_forward_ad=True, check_backward_ad=False,
                                    check_undefined_grad=False, check_batched_grad=False,
                                    fast_mode=True)


def test_hvp_equals_dense_hessian_float64():
    """The exact answer: Hessian of a scalar of (q, k, v, bias) by torch.autograd.functional.hessian."""
    q, k, v, bias = (t[:1, :1] for t in _inputs(5, 16, "full", dtype=torch.float64))
    sizes = [t.numel() for t in (q, k, v, bias)]
    shapes = [t.shape for t in (q, k, v, bias)]

    def unflatten(x):
        return [c.reshape(s) for c, s in zip(x.split(sizes), shapes)]

    x0 = torch.cat([t.reshape(-1) for t in (q, k, v, bias)])
    dense = torch.autograd.functional.hessian(lambda x: _loss(math_attention)(*unflatten(x)), x0)
    direction = torch.randn_like(x0)
    hvp = _hvp(_loss(fused_attention, block=2), tuple(unflatten(x0)), tuple(unflatten(direction)))
    torch.testing.assert_close(torch.cat([h.reshape(-1) for h in hvp]), dense @ direction,
                               rtol=1e-10, atol=1e-10)


def test_block_size_does_not_change_results():
    primals = _primals(*_inputs(65, 16, "heads"))
    tangents = tuple(torch.randn_like(p) for p in primals)
    ref = _hvp(_loss(fused_attention, block=1024), primals, tangents)
    for block in (1, 16, 64):
        _assert_close(_hvp(_loss(fused_attention, block=block), primals, tangents), ref, tol=1e-5)


def test_cross_attention_different_lengths():
    q, k, v, bias = _inputs(7, 16, "heads", n_k=12)
    _assert_close([fused_attention(q, k, v, attn_bias=bias, scale=0.3, block=5)],
                  [math_attention(q, k, v, attn_bias=bias, scale=0.3)])
    primals = (q, k, v, bias)
    tangents = tuple(torch.randn_like(p) for p in primals)
    _assert_close(_hvp(_loss(fused_attention, block=5), primals, tangents),
                  _hvp(_loss(math_attention), primals, tangents))


def test_explicit_scale_and_partial_tangents():
    """jvp with respect to q only and v only (the other tangents are absent)."""
    q, k, v, _ = _inputs(9, 32, None)
    for which in (0, 2):
        def f(x, which=which):
            args = [q, k, v]
            args[which] = x
            return fused_attention(*args, scale=0.7, block=4)

        def g(x, which=which):
            args = [q, k, v]
            args[which] = x
            return math_attention(*args, scale=0.7)
        t = torch.randn_like(q)
        _assert_close([jvp(f, ((q, k, v)[which],), (t,))[1]], [jvp(g, ((q, k, v)[which],), (t,))[1]])


def test_bias_without_grad_and_inputs_without_grad():
    q, k, v, bias = _inputs(7, 16, "heads")
    q.requires_grad_()
    out = fused_attention(q, k, v, attn_bias=bias)
    out.sum().backward()
    ref_q = q.detach().clone().requires_grad_()
    math_attention(ref_q, k, v, attn_bias=bias).sum().backward()
    _assert_close([q.grad], [ref_q.grad])


class TestBadInputs:
    def test_head_dim_not_supported_by_triton(self):
        x = torch.randn(1, 2, 5, 24)
        with pytest.raises(ValueError, match="head dim D=24"):
            fused_attention(x, x, x, backend="triton")

    @pytest.mark.parametrize("head_dim", [3, 24])
    def test_torch_path_takes_any_head_dim(self, head_dim):
        q, k, v = (torch.randn(1, 2, 5, head_dim) for _ in range(3))
        torch.testing.assert_close(fused_attention(q, k, v), math_attention(q, k, v),
                                   rtol=1e-5, atol=1e-6)

    def test_not_4d(self):
        x = torch.randn(2, 5, 16)
        with pytest.raises(ValueError, match=r"q must have shape \(B, H, N, D\)"):
            fused_attention(x, x, x)

    def test_mismatched_shapes(self):
        q = torch.randn(1, 2, 5, 16)
        with pytest.raises(ValueError, match="k and v must have the same shape"):
            fused_attention(q, torch.randn(1, 2, 5, 16), torch.randn(1, 2, 6, 16))
        with pytest.raises(ValueError, match="must agree in batch, heads and head dim"):
            fused_attention(q, torch.randn(1, 3, 5, 16), torch.randn(1, 3, 5, 16))

    def test_mismatched_dtypes(self):
        q = torch.randn(1, 2, 5, 16)
        with pytest.raises(TypeError, match="k has dtype torch.float64"):
            fused_attention(q, q.double(), q)
        with pytest.raises(TypeError, match="attn_bias has dtype"):
            fused_attention(q, q, q, attn_bias=torch.zeros(5, 5, dtype=torch.float64))
        with pytest.raises(TypeError, match="floating point"):
            fused_attention(q.long(), q.long(), q.long())

    def test_mismatched_devices(self):
        q = torch.randn(1, 2, 5, 16)
        with pytest.raises(ValueError, match="v is on meta"):
            fused_attention(q, q, q.to("meta"))

    def test_bias_not_broadcastable(self):
        q = torch.randn(1, 2, 5, 16)
        with pytest.raises(ValueError, match="attn_bias of shape \\(3, 5, 5\\) is not broadcastable"):
            fused_attention(q, q, q, attn_bias=torch.zeros(3, 5, 5))
        with pytest.raises(TypeError, match="attn_bias must be a tensor"):
            fused_attention(q, q, q, attn_bias=[[0.0]])

    def test_bad_scale_backend_block(self):
        q = torch.randn(1, 2, 5, 16)
        with pytest.raises(TypeError, match="scale must be a finite float"):
            fused_attention(q, q, q, scale=float("nan"))
        with pytest.raises(ValueError, match="backend must be one of"):
            fused_attention(q, q, q, backend="cuda")
        with pytest.raises(ValueError, match="block must be a positive int"):
            fused_attention(q, q, q, block=0)
        with pytest.raises(TypeError, match="q must be a torch.Tensor"):
            fused_attention(q.numpy(), q, q)


class _LargestIntermediate(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest tensor any aten op produces (the N x N matrix, if one is built)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("mode", ["forward", "grad", "jvp_of_grad", "double_backward"])
def test_memory_is_n_times_block_not_n_squared(mode):
    """The composite path never builds an (N, N) score matrix: every intermediate is at most
    (B, H, N, block), while the math backend's largest is (B, H, N, N)."""
    n, block, heads = 256, 32, 2
    q, k, v = (torch.randn(1, heads, n, 16) for _ in range(3))

    def run(attention):
        loss = lambda q, k, v: attention(q, k, v).sin().sum()  # noqa: E731
        if mode == "forward":
            attention(q, k, v)
        elif mode == "grad":
            grad(loss, argnums=(0, 1, 2))(q, k, v)
        elif mode == "jvp_of_grad":
            jvp(lambda *p: grad(loss, argnums=(0, 1, 2))(*p), (q, k, v), (v, q, k))
        else:
            leaves = [t.clone().requires_grad_() for t in (q, k, v)]
            grads = torch.autograd.grad(loss(*leaves), leaves, create_graph=True)
            torch.autograd.grad(sum(g.sum() for g in grads), leaves)

    fused, math = _LargestIntermediate(), _LargestIntermediate()
    with fused:
        run(lambda q, k, v: fused_attention(q, k, v, block=block))
    with math:
        run(math_attention)
    assert fused.largest <= heads * n * block
    assert math.largest >= heads * n * n


def test_vmap_over_primals_per_sample_gradients():
    """vmap over the batch of q/k/v (per-sample gradients), not only over tangents."""
    q, k, v, bias = _inputs(9, 16, "heads")
    loss_f = lambda q, k, v: _loss(fused_attention, block=4)(q[None], k[None], v[None], bias)  # noqa: E731
    loss_m = lambda q, k, v: _loss(math_attention)(q[None], k[None], v[None], bias)  # noqa: E731
    _assert_close(vmap(grad(loss_f, argnums=(0, 1, 2)))(q, k, v),
                  vmap(grad(loss_m, argnums=(0, 1, 2)))(q, k, v))

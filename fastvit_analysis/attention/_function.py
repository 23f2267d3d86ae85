"""The autograd structure of fused attention, shared by the CPU (composite) and Triton backends.

Two autograd.Functions, each with forward, setup_context, backward and jvp:

* ``AttentionFunction``: (Q, K, V, B) -> (O, lse).  Its backward is ``AttentionBackward.apply``,
  so the backward is itself differentiable; its jvp is the streaming forward-mode kernel.
* ``AttentionBackward``: (Q, K, V, B, O, lse, dO) -> (dQ, dK, dV, dB).  O and lse are caches
  (functions of Q, K, V, B): their tangents/cotangents are ignored, the total derivative is
  computed from Q, K, V, B.  Its jvp is the "JVP of the backward" kernel (forward-over-reverse,
  i.e. Hessian-vector products); its backward (double backward) reuses the same two kernels:
  the map (x, dO) -> J(x)^T dO has Jacobian [H(dO), J^T], and H(dO) is symmetric, so
      vjp_x(u) = bwd_jvp(x, dO; tangent u, d(dO)=0),   vjp_dO(u) = fwd_jvp(x; tangent u).O'.

Both set ``generate_vmap_rule = True``: their bodies only call torch ops or torch.library custom
ops that carry vmap rules, so torch.func.vmap (e.g. over HVP tangents) composes.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from . import _composite


class _CompositeBackend:
    name = "eager"

    @staticmethod
    def fwd(q, k, v, bias, scale, block):
        return _composite.fwd(q, k, v, bias, scale, block)

    @staticmethod
    def fwd_jvp(q, k, v, bias, scale, t_q, t_k, t_v, t_bias, block):
        return _composite.fwd_jvp(q, k, v, bias, scale, t_q, t_k, t_v, t_bias, block)

    @staticmethod
    def bwd(q, k, v, bias, o, lse, grad_o, scale, bias_rg, block):
        return _composite.bwd(q, k, v, bias, o, lse, grad_o, scale, bias_rg, block)

    @staticmethod
    def bwd_jvp(q, k, v, bias, grad_o, scale, bias_rg, t_q, t_k, t_v, t_bias, t_grad_o, block):
        return _composite.bwd_jvp(q, k, v, bias, grad_o, scale, bias_rg,
                                  t_q, t_k, t_v, t_bias, t_grad_o, block)


class _TritonBackend:
    name = "triton"

    @staticmethod
    def _ops():
        from . import _triton_ops
        return _triton_ops

    @classmethod
    def fwd(cls, q, k, v, bias, scale, block):
        return cls._ops().fwd(q, k, v, bias, scale)

    @classmethod
    def fwd_jvp(cls, q, k, v, bias, scale, t_q, t_k, t_v, t_bias, block):
        return cls._ops().fwd_jvp(q, k, v, bias, scale, t_q, t_k, t_v, t_bias)

    @classmethod
    def bwd(cls, q, k, v, bias, o, lse, grad_o, scale, bias_rg, block):
        return cls._ops().bwd(q, k, v, bias, o, lse, grad_o, scale, bias_rg)

    @classmethod
    def bwd_jvp(cls, q, k, v, bias, grad_o, scale, bias_rg, t_q, t_k, t_v, t_bias, t_grad_o, block):
        return cls._ops().bwd_jvp(q, k, v, bias, grad_o, scale, bias_rg,
                                  t_q, t_k, t_v, t_bias, t_grad_o)


BACKENDS = {"eager": _CompositeBackend, "triton": _TritonBackend}


def _needs_grad(t: Optional[Tensor]) -> bool:
    return t is not None and t.requires_grad


class AttentionFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], scale: float,
                backend: str, block: int) -> tuple[Tensor, Tensor]:
        return BACKENDS[backend].fwd(q, k, v, bias, scale, block)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        q, k, v, bias, scale, backend, block = inputs
        o, lse = output
        ctx.scale, ctx.backend, ctx.block = scale, backend, block
        ctx.bias_requires_grad = _needs_grad(bias)
        ctx.mark_non_differentiable(lse)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(q, k, v, bias, o, lse)
        ctx.save_for_forward(q, k, v, bias)

    @staticmethod
    def backward(ctx: Any, grad_o: Optional[Tensor], _grad_lse: Optional[Tensor]):
        q, k, v, bias, o, lse = ctx.saved_tensors
        if grad_o is None:
            return None, None, None, None, None, None, None
        grad_q, grad_k, grad_v, grad_bias = AttentionBackward.apply(
            q, k, v, bias, o, lse, grad_o, ctx.scale, ctx.backend, ctx.block,
            ctx.needs_input_grad[3])
        return grad_q, grad_k, grad_v, grad_bias, None, None, None

    @staticmethod
    def jvp(ctx: Any, t_q, t_k, t_v, t_bias, _t_scale, _t_backend, _t_block):
        q, k, v, bias = ctx.saved_tensors
        _, _, t_o, _t_lse = BACKENDS[ctx.backend].fwd_jvp(
            q, k, v, bias, ctx.scale, t_q, t_k, t_v, t_bias, ctx.block)
        return t_o, None


class AttentionBackward(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(q, k, v, bias, o, lse, grad_o, scale: float, backend: str, block: int,
                bias_requires_grad: bool):
        return BACKENDS[backend].bwd(q, k, v, bias, o, lse, grad_o, scale,
                                     bias_requires_grad, block)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        q, k, v, bias, o, lse, grad_o, scale, backend, block, bias_rg = inputs
        ctx.scale, ctx.backend, ctx.block, ctx.bias_requires_grad = scale, backend, block, bias_rg
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(q, k, v, bias, grad_o)
        ctx.save_for_forward(q, k, v, bias, grad_o)

    @staticmethod
    def jvp(ctx: Any, t_q, t_k, t_v, t_bias, _t_o, _t_lse, t_grad_o, *_non_tensor):
        q, k, v, bias, grad_o = ctx.saved_tensors
        if bias is None:
            t_bias = None
        return BACKENDS[ctx.backend].bwd_jvp(
            q, k, v, bias, grad_o, ctx.scale, ctx.bias_requires_grad,
            t_q, t_k, t_v, t_bias, t_grad_o, ctx.block)

    @staticmethod
    def backward(ctx: Any, g_q, g_k, g_v, g_bias):
        q, k, v, bias, grad_o = ctx.saved_tensors
        backend = BACKENDS[ctx.backend]
        if bias is None:
            g_bias = None
        if all(g is None for g in (g_q, g_k, g_v, g_bias)):
            return (None,) * 11
        need = ctx.needs_input_grad
        gq = gk = gv = gb = gdo = None
        if any(need[:4]):
            gq, gk, gv, gb = backend.bwd_jvp(
                q, k, v, bias, grad_o, ctx.scale, bool(need[3]) and bias is not None,
                g_q, g_k, g_v, g_bias, None, ctx.block)
        if need[6]:
            _, _, gdo, _ = backend.fwd_jvp(q, k, v, bias, ctx.scale, g_q, g_k, g_v, g_bias,
                                           ctx.block)
        return gq, gk, gv, gb, None, None, gdo, None, None, None, None

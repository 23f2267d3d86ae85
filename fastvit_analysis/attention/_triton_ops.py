"""torch.library custom ops around the Triton attention kernels (kernels/attention_*.py).

The ops are the launch boundary: they get fake (meta) implementations so torch.compile /
FakeTensor tracing see shapes, and vmap rules so torch.func.vmap composes (e.g. vmap over HVP
tangents): the vmapped dimension is folded into the batch dimension, one launch for all.
Autograd is not registered on the ops themselves: the autograd.Functions in _function.py compose
them (forward, backward, jvp, jvp of backward).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

_NS = "fastvit_analysis"


def _kernels():
    from fastvit_analysis.kernels import attention_bwd, attention_fwd
    return attention_fwd, attention_bwd


def _empty() -> Tensor:
    return torch.empty(0)


@torch.library.custom_op(f"{_NS}::attention_fwd", mutates_args=())
def attention_fwd_op(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor],
                     scale: float) -> tuple[Tensor, Tensor]:
    fwd_mod, _ = _kernels()
    return fwd_mod.attention_fwd(q, k, v, bias, scale)


@torch.library.custom_op(f"{_NS}::attention_fwd_jvp", mutates_args=())
def attention_fwd_jvp_op(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], scale: float,
                         t_q: Optional[Tensor], t_k: Optional[Tensor], t_v: Optional[Tensor],
                         t_bias: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    fwd_mod, _ = _kernels()
    return fwd_mod.attention_fwd_jvp(q, k, v, bias, scale, t_q, t_k, t_v, t_bias)


@torch.library.custom_op(f"{_NS}::attention_bwd", mutates_args=())
def attention_bwd_op(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], o: Tensor,
                     lse: Tensor, grad_o: Tensor, scale: float,
                     bias_requires_grad: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _, bwd_mod = _kernels()
    dq, dk, dv, db = bwd_mod.attention_bwd(q, k, v, bias, o, lse, grad_o, scale, bias_requires_grad)
    return dq, dk, dv, (db if db is not None else q.new_empty(0))


@torch.library.custom_op(f"{_NS}::attention_bwd_jvp", mutates_args=())
def attention_bwd_jvp_op(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], grad_o: Tensor,
                         scale: float, bias_requires_grad: bool, t_q: Optional[Tensor],
                         t_k: Optional[Tensor], t_v: Optional[Tensor], t_bias: Optional[Tensor],
                         t_grad_o: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _, bwd_mod = _kernels()
    dq, dk, dv, db = bwd_mod.attention_bwd_jvp(q, k, v, bias, grad_o, scale, bias_requires_grad,
                                               t_q, t_k, t_v, t_bias, t_grad_o)
    return dq, dk, dv, (db if db is not None else q.new_empty(0))


# ---------------------------------------------------------------------------- fake impls
def _lse_like(q: Tensor) -> Tensor:
    return q.new_empty(q.shape[:-1], dtype=torch.float32)


def _dense_like(t: Tensor) -> Tensor:
    # The launchers make inputs contiguous, so outputs are contiguous whatever the input strides.
    return t.new_empty(t.shape)


@attention_fwd_op.register_fake
def _(q, k, v, bias, scale):
    return _dense_like(q), _lse_like(q)


@attention_fwd_jvp_op.register_fake
def _(q, k, v, bias, scale, t_q, t_k, t_v, t_bias):
    return _dense_like(q), _lse_like(q), _dense_like(q), _lse_like(q)


def _grads_fake(q, k, v, bias, bias_requires_grad):
    db = _dense_like(bias) if (bias is not None and bias_requires_grad) else q.new_empty(0)
    return _dense_like(q), _dense_like(k), _dense_like(v), db


@attention_bwd_op.register_fake
def _(q, k, v, bias, o, lse, grad_o, scale, bias_requires_grad):
    return _grads_fake(q, k, v, bias, bias_requires_grad)


@attention_bwd_jvp_op.register_fake
def _(q, k, v, bias, grad_o, scale, bias_requires_grad, t_q, t_k, t_v, t_bias, t_grad_o):
    return _grads_fake(q, k, v, bias, bias_requires_grad)


# ---------------------------------------------------------------------------- vmap rules
# Argument / output layouts of each op: "x" (B, H, N, D), "row" (B, H, N), "bias" (any shape
# broadcastable to (B, H, N_q, N_k)), "bias_grad" (bias-shaped or empty), None (not a tensor).
_LAYOUTS = {
    "attention_fwd": (("x", "x", "x", "bias", None), ("x", "row")),
    "attention_fwd_jvp": (("x", "x", "x", "bias", None, "x", "x", "x", "bias"),
                          ("x", "row", "x", "row")),
    "attention_bwd": (("x", "x", "x", "bias", "x", "row", "x", None, None),
                      ("x", "x", "x", "bias_grad")),
    "attention_bwd_jvp": (("x", "x", "x", "bias", "x", None, None, "x", "x", "x", "bias", "x"),
                          ("x", "x", "x", "bias_grad")),
}


def _folding_vmap(op, name):
    """vmap by folding the vmapped dimension into the batch dimension: one launch for all.

    Unbatched arguments are expanded; the bias is materialised per (vmap, batch) pair so that
    its gradient stays per vmapped slice, then reduced back over the batch if it broadcast there.
    """
    arg_layouts, out_layouts = _LAYOUTS[name]

    def rule(info, in_dims, *args):
        size = info.batch_size
        batch = None
        for a, d, layout in zip(args, in_dims, arg_layouts):
            if layout == "x":
                batch = a.shape[1] if d is not None else a.shape[0]
                break
        bias_shape = None
        folded = []
        for a, d, layout in zip(args, in_dims, arg_layouts):
            if layout is None or a is None:
                folded.append(a)
                continue
            a = a.movedim(d, 0) if d is not None else a.expand(size, *a.shape)
            if layout == "bias":
                logical = tuple(a.shape[1:])
                bias_shape = logical
                a = a.reshape(size, *([1] * (4 - len(logical))), *logical)
                a = a.expand(size, batch, *a.shape[2:])
            folded.append(a.reshape(size * a.shape[1], *a.shape[2:]))
        outs = op(*folded)
        results = []
        for out, layout in zip(outs, out_layouts):
            if layout == "bias_grad":
                if out.numel() == 0:
                    results.append(out.new_empty(size, 0))
                    continue
                grad = out.reshape(size, batch, *out.shape[1:])
                padded = (1,) * (4 - len(bias_shape)) + bias_shape
                if padded[0] == 1:
                    grad = grad.sum(dim=1, keepdim=True)
                results.append(grad.reshape(size, *bias_shape))
            else:
                results.append(out.reshape(size, batch, *out.shape[1:]))
        return tuple(results), (0,) * len(results)
    return rule


for _name, _op in (("attention_fwd", attention_fwd_op), ("attention_fwd_jvp", attention_fwd_jvp_op),
                   ("attention_bwd", attention_bwd_op), ("attention_bwd_jvp", attention_bwd_jvp_op)):
    torch.library.register_vmap(_op, _folding_vmap(_op, _name))


# ---------------------------------------------------------------------------- backend API
def _maybe(db: Tensor) -> Optional[Tensor]:
    return None if db.numel() == 0 else db


def fwd(q, k, v, bias, scale):
    return attention_fwd_op(q, k, v, bias, scale)


def fwd_jvp(q, k, v, bias, scale, t_q, t_k, t_v, t_bias):
    return attention_fwd_jvp_op(q, k, v, bias, scale, t_q, t_k, t_v,
                                t_bias if bias is not None else None)


def bwd(q, k, v, bias, o, lse, grad_o, scale, bias_requires_grad):
    dq, dk, dv, db = attention_bwd_op(q, k, v, bias, o, lse, grad_o, scale,
                                      bool(bias_requires_grad and bias is not None))
    return dq, dk, dv, _maybe(db)


def bwd_jvp(q, k, v, bias, grad_o, scale, bias_requires_grad, t_q, t_k, t_v, t_bias, t_grad_o):
    dq, dk, dv, db = attention_bwd_jvp_op(q, k, v, bias, grad_o, scale,
                                          bool(bias_requires_grad and bias is not None),
                                          t_q, t_k, t_v, t_bias if bias is not None else None,
                                          t_grad_o)
    return dq, dk, dv, _maybe(db)

"""torch.library custom ops around the Triton attention kernels (kernels/attention_*.py).

The ops are the launch boundary: they get fake (meta) implementations so torch.compile /
FakeTensor tracing see shapes, and vmap rules so torch.func.vmap composes (e.g. vmap over HVP
tangents).  The vmap rule runs the op once per vmapped slice: simple and exact; a batch-folding
rule is a possible speed-up.  Autograd is not registered on the ops themselves: the
autograd.Functions in _function.py compose them (forward, backward, jvp, jvp of backward).
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


@attention_fwd_op.register_fake
def _(q, k, v, bias, scale):
    return torch.empty_like(q), _lse_like(q)


@attention_fwd_jvp_op.register_fake
def _(q, k, v, bias, scale, t_q, t_k, t_v, t_bias):
    return torch.empty_like(q), _lse_like(q), torch.empty_like(q), _lse_like(q)


def _grads_fake(q, k, v, bias, bias_requires_grad):
    db = torch.empty_like(bias) if (bias is not None and bias_requires_grad) else q.new_empty(0)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), db


@attention_bwd_op.register_fake
def _(q, k, v, bias, o, lse, grad_o, scale, bias_requires_grad):
    return _grads_fake(q, k, v, bias, bias_requires_grad)


@attention_bwd_jvp_op.register_fake
def _(q, k, v, bias, grad_o, scale, bias_requires_grad, t_q, t_k, t_v, t_bias, t_grad_o):
    return _grads_fake(q, k, v, bias, bias_requires_grad)


# ---------------------------------------------------------------------------- vmap rules
def _per_slice_vmap(op):
    def rule(info, in_dims, *args):
        outs = []
        for i in range(info.batch_size):
            sliced = [a.select(d, i) if d is not None else a for a, d in zip(args, in_dims)]
            outs.append(op(*sliced))
        stacked = tuple(torch.stack([out[j] for out in outs]) for j in range(len(outs[0])))
        return stacked, (0,) * len(stacked)
    return rule


for _op in (attention_fwd_op, attention_fwd_jvp_op, attention_bwd_op, attention_bwd_jvp_op):
    torch.library.register_vmap(_op, _per_slice_vmap(_op))


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

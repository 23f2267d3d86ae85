"""Attention backward (dQ, dK, dV, dBias) for the full, non-causal key range, and its JVP.

Two kernels, no atomics:
* ``bwd_kv_kernel``: one program per key block, loops over *all* query blocks -> dK, dV.
  (The Triton tutorial's backward assumes a causal mask and skips blocks; here every query
  block contributes.)
* ``bwd_q_kernel``: one program per query block, loops over all key blocks -> dQ (and dS
  written out as the bias gradient when the bias requires grad).

With P = exp(S - lse), dP = dO V^T, D = rowsum(dO * O), dS = P (dP - D):
    dV = P^T dO,  dK = scale dS^T Q,  dQ = scale dS K,  dB = dS.
In ``JVP`` mode the same kernels return the tangents of those four gradients (the JVP of the
backward, i.e. forward-over-reverse), given S' = scale (Q' K^T + Q K'^T) + B', lse', D':
    P' = P (S' - lse'),  dP' = dO' V^T + dO V'^T,  dS' = P' (dP - D) + P (dP' - D'),
    dV' = P'^T dO + P^T dO',  dK' = scale (dS'^T Q + dS^T Q'),  dQ' = scale (dS' K + dS K'),
    dB' = dS'.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention_common import bias_4d, check_device, dot, is_ieee, masked_scores, tangent_scores
from .attention_configs import CONFIGS, pruner
from .attention_fwd import attention_fwd_jvp


@triton.jit
def _scores_and_probs(q, k, Bias, b, h, offs_m, offs_n, mask_mn, mask_n, lse,
                      sb_b, sb_h, sb_m, sb_n, scale, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr):
    s = masked_scores(q, k, Bias, b, h, offs_m, offs_n, mask_mn, mask_n, sb_b, sb_h, sb_m, sb_n, scale,
                      HAS_BIAS, IEEE)
    return tl.exp(s - lse[:, None])


@triton.autotune(configs=CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "JVP"],
                 prune_configs_by={"early_config_prune": pruner("bwd_kv")})
@triton.jit
def bwd_kv_kernel(
    Q, K, V, Bias, DO, LSE, DELTA, TQ, TK, TV, TBias, TDO, TLSE, TDELTA, DK, DV,
    sb_b, sb_h, sb_m, sb_n, stb_b, stb_h, stb_m, stb_n,
    H, N_Q, N_K, scale,
    HAS_BIAS: tl.constexpr, HAS_TBIAS: tl.constexpr, JVP: tl.constexpr, IEEE: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_n = offs_n < N_K
    kv_ptrs = bh * N_K * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    k = tl.load(K + kv_ptrs, mask=mask_n[:, None], other=0.0)
    v = tl.load(V + kv_ptrs, mask=mask_n[:, None], other=0.0)
    if JVP:
        tk = tl.load(TK + kv_ptrs, mask=mask_n[:, None], other=0.0)
        tv = tl.load(TV + kv_ptrs, mask=mask_n[:, None], other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    for start_m in range(0, N_Q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mask_m = offs_m < N_Q
        mask_mn = mask_m[:, None] & mask_n[None, :]
        q_ptrs = bh * N_Q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
        row_ptrs = bh * N_Q + offs_m
        q = tl.load(Q + q_ptrs, mask=mask_m[:, None], other=0.0)
        do = tl.load(DO + q_ptrs, mask=mask_m[:, None], other=0.0)
        lse = tl.load(LSE + row_ptrs, mask=mask_m, other=0.0)
        delta = tl.load(DELTA + row_ptrs, mask=mask_m, other=0.0)
        p = _scores_and_probs(q, k, Bias, b, h, offs_m, offs_n, mask_mn, mask_n, lse,
                              sb_b, sb_h, sb_m, sb_n, scale, HAS_BIAS, IEEE)
        dp = dot(do, tl.trans(v), IEEE)
        ds = p * (dp - delta[:, None])
        if JVP:
            tq = tl.load(TQ + q_ptrs, mask=mask_m[:, None], other=0.0)
            tdo = tl.load(TDO + q_ptrs, mask=mask_m[:, None], other=0.0)
            tlse = tl.load(TLSE + row_ptrs, mask=mask_m, other=0.0)
            tdelta = tl.load(TDELTA + row_ptrs, mask=mask_m, other=0.0)
            ts = tangent_scores(q, k, tq, tk, TBias, b, h, offs_m, offs_n, mask_mn,
                                 stb_b, stb_h, stb_m, stb_n, scale, HAS_TBIAS, IEEE)
            tp = p * (ts - tlse[:, None])
            tdp = dot(tdo, tl.trans(v), IEEE) + dot(do, tl.trans(tv), IEEE)
            tds = tp * (dp - delta[:, None]) + p * (tdp - tdelta[:, None])
            dv += dot(tl.trans(tp.to(do.dtype)), do, IEEE) + dot(tl.trans(p.to(tdo.dtype)), tdo, IEEE)
            dk += (dot(tl.trans(tds.to(q.dtype)), q, IEEE) + dot(tl.trans(ds.to(tq.dtype)), tq, IEEE)) * scale
        else:
            dv += dot(tl.trans(p.to(do.dtype)), do, IEEE)
            dk += dot(tl.trans(ds.to(q.dtype)), q, IEEE) * scale
    tl.store(DK + kv_ptrs, dk.to(DK.dtype.element_ty), mask=mask_n[:, None])
    tl.store(DV + kv_ptrs, dv.to(DV.dtype.element_ty), mask=mask_n[:, None])


@triton.autotune(configs=CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "JVP", "STORE_DS"],
                 prune_configs_by={"early_config_prune": pruner("bwd_q")})
@triton.jit
def bwd_q_kernel(
    Q, K, V, Bias, DO, LSE, DELTA, TQ, TK, TV, TBias, TDO, TLSE, TDELTA, DQ, DS,
    sb_b, sb_h, sb_m, sb_n, stb_b, stb_h, stb_m, stb_n,
    H, N_Q, N_K, scale,
    HAS_BIAS: tl.constexpr, HAS_TBIAS: tl.constexpr, JVP: tl.constexpr, IEEE: tl.constexpr,
    STORE_DS: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_m = offs_m < N_Q
    q_ptrs = bh * N_Q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    row_ptrs = bh * N_Q + offs_m
    q = tl.load(Q + q_ptrs, mask=mask_m[:, None], other=0.0)
    do = tl.load(DO + q_ptrs, mask=mask_m[:, None], other=0.0)
    lse = tl.load(LSE + row_ptrs, mask=mask_m, other=0.0)
    delta = tl.load(DELTA + row_ptrs, mask=mask_m, other=0.0)
    if JVP:
        tq = tl.load(TQ + q_ptrs, mask=mask_m[:, None], other=0.0)
        tdo = tl.load(TDO + q_ptrs, mask=mask_m[:, None], other=0.0)
        tlse = tl.load(TLSE + row_ptrs, mask=mask_m, other=0.0)
        tdelta = tl.load(TDELTA + row_ptrs, mask=mask_m, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, N_K, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N_K
        mask_mn = mask_m[:, None] & mask_n[None, :]
        kv_ptrs = bh * N_K * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
        k = tl.load(K + kv_ptrs, mask=mask_n[:, None], other=0.0)
        v = tl.load(V + kv_ptrs, mask=mask_n[:, None], other=0.0)
        p = _scores_and_probs(q, k, Bias, b, h, offs_m, offs_n, mask_mn, mask_n, lse,
                              sb_b, sb_h, sb_m, sb_n, scale, HAS_BIAS, IEEE)
        dp = dot(do, tl.trans(v), IEEE)
        ds = p * (dp - delta[:, None])
        if JVP:
            tk = tl.load(TK + kv_ptrs, mask=mask_n[:, None], other=0.0)
            tv = tl.load(TV + kv_ptrs, mask=mask_n[:, None], other=0.0)
            ts = tangent_scores(q, k, tq, tk, TBias, b, h, offs_m, offs_n, mask_mn,
                                 stb_b, stb_h, stb_m, stb_n, scale, HAS_TBIAS, IEEE)
            tp = p * (ts - tlse[:, None])
            tdp = dot(tdo, tl.trans(v), IEEE) + dot(do, tl.trans(tv), IEEE)
            tds = tp * (dp - delta[:, None]) + p * (tdp - tdelta[:, None])
            dq += (dot(tds.to(k.dtype), k, IEEE) + dot(ds.to(tk.dtype), tk, IEEE)) * scale
            out_ds = tds
        else:
            dq += dot(ds.to(k.dtype), k, IEEE) * scale
            out_ds = ds
        if STORE_DS:
            # int64: B*H*N_q*N_k passes 2**31 for long sequences
            ds_ptrs = bh.to(tl.int64) * N_Q * N_K + offs_m[:, None] * N_K + offs_n[None, :]
            tl.store(DS + ds_ptrs, out_ds, mask=mask_mn)
    tl.store(DQ + q_ptrs, dq.to(DQ.dtype.element_ty), mask=mask_m[:, None])


def _reduce_bias_grad(ds: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Sum a full (B, H, N_q, N_k) float32 gradient down to the bias's (broadcast) shape."""
    lead = ds.dim() - bias.dim()
    grad = ds.sum(dim=tuple(range(lead))) if lead > 0 else ds
    dims = tuple(i for i, size in enumerate(bias.shape) if size == 1 and grad.shape[i] != 1)
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad.to(bias.dtype)


def _launch(q, k, v, bias, grad_o, lse, delta, scale, bias_requires_grad, tangents):
    check_device(q, k, v, bias, grad_o)
    q, k, v, grad_o = q.contiguous(), k.contiguous(), v.contiguous(), grad_o.contiguous()
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    shape = (batch, heads, n_q, n_k)
    bias4, sb = bias_4d(bias, shape)
    jvp = tangents is not None
    if jvp:
        tq, tk, tv, tbias, tdo, tlse, tdelta = tangents
        tbias4, stb = bias_4d(tbias, shape)
    else:
        tq = tk = tv = tdo = q
        tlse = tdelta = lse
        tbias4, stb = None, (0, 0, 0, 0)
    store_ds = bool(bias_requires_grad and bias is not None)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    ds = torch.empty(shape if store_ds else (1,), device=q.device, dtype=torch.float32)
    common = dict(HAS_BIAS=bias4 is not None, HAS_TBIAS=tbias4 is not None, JVP=jvp,
                  IEEE=is_ieee(q.dtype), HEAD_DIM=head_dim)
    inputs = (q, k, v, bias4 if bias4 is not None else q, grad_o, lse, delta,
              tq, tk, tv, tbias4 if tbias4 is not None else q, tdo, tlse, tdelta)
    scalars = (*sb, *stb, heads, n_q, n_k, float(scale))
    grid_kv = lambda meta: (triton.cdiv(n_k, meta["BLOCK_N"]), batch * heads)  # noqa: E731
    grid_q = lambda meta: (triton.cdiv(n_q, meta["BLOCK_M"]), batch * heads)  # noqa: E731
    bwd_kv_kernel[grid_kv](*inputs, dk, dv, *scalars, **common)
    bwd_q_kernel[grid_q](*inputs, dq, ds, *scalars, STORE_DS=store_ds, **common)
    grad_bias = _reduce_bias_grad(ds, bias) if store_ds else None
    return dq, dk, dv, grad_bias


def attention_bwd(q, k, v, bias, o, lse, grad_o, scale, bias_requires_grad):
    """(dQ, dK, dV, dBias or None) of O = attention(q, k, v, bias) for the cotangent grad_o."""
    delta = (grad_o.float() * o.float()).sum(-1).contiguous()
    return _launch(q, k, v, bias, grad_o, lse.contiguous(), delta, scale, bias_requires_grad, None)


def attention_bwd_jvp(q, k, v, bias, grad_o, scale, bias_requires_grad,
                      t_q, t_k, t_v, t_bias, t_grad_o):
    """Tangents of (dQ, dK, dV, dBias) along (q', k', v', bias', grad_o'); None means zero.

    One forward-JVP pass recomputes O, lse and their tangents (O(N) memory), then the two
    backward kernels run in JVP mode.
    """
    t_q = torch.zeros_like(q) if t_q is None else t_q.contiguous()
    t_k = torch.zeros_like(k) if t_k is None else t_k.contiguous()
    t_v = torch.zeros_like(v) if t_v is None else t_v.contiguous()
    t_grad_o = torch.zeros_like(grad_o) if t_grad_o is None else t_grad_o.contiguous()
    o, lse, t_o, t_lse = attention_fwd_jvp(q, k, v, bias, scale, t_q, t_k, t_v, t_bias)
    go, o32, to32 = grad_o.float(), o.float(), t_o.float()
    delta = (go * o32).sum(-1).contiguous()
    t_delta = ((t_grad_o.float() * o32).sum(-1) + (go * to32).sum(-1)).contiguous()
    return _launch(q, k, v, bias, grad_o, lse, delta, scale, bias_requires_grad,
                   (t_q, t_k, t_v, t_bias, t_grad_o, t_lse.contiguous(), t_delta))

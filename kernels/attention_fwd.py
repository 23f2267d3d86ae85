"""Attention forward with online softmax (saves the log-sum-exp) and its forward-mode JVP.

One kernel, two modes (``JVP`` constexpr).  Per query block, over all key blocks:
    S = scale * Q K^T + B,  running max m, l = sum exp(S - m), acc = sum exp(S - m) V
and with JVP also, for S' = scale (Q' K^T + Q K'^T) + B':
    acc_t = sum p S' V + p V',   row_t = sum p S'
rescaled by the same alpha = exp(m_old - m_new).  At the end
    O = acc / l,  lse = m + log l,  lse' = row_t / l,  O' = acc_t / l - lse' O.
Keys beyond N_k are masked to -inf, so any N works (not only multiples of the block).
A row whose scores so far are all -inf (a fully masked row, or a first key block masked for it)
exponentiates against 0 instead of its -inf max (no inf - inf); a fully masked row ends with l = 0
and gets O = 0, O' = 0 and lse = +inf, so the backward kernels' P = exp(S - lse) is 0 there.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention_common import bias_4d, check_device, dot, is_ieee, masked_scores, tangent_scores
from .attention_configs import CONFIGS, pruner


@triton.autotune(configs=CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "JVP"],
                 prune_configs_by={"early_config_prune": pruner("fwd")})
@triton.jit
def attention_fwd_kernel(
    Q, K, V, Bias, TQ, TK, TV, TBias, O, LSE, TO, TLSE,
    sb_b, sb_h, sb_m, sb_n, stb_b, stb_h, stb_m, stb_n,
    H, N_Q, N_K, scale,
    HAS_BIAS: tl.constexpr, HAS_TBIAS: tl.constexpr, JVP: tl.constexpr, IEEE: tl.constexpr,
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
    q = tl.load(Q + q_ptrs, mask=mask_m[:, None], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    if JVP:
        tq = tl.load(TQ + q_ptrs, mask=mask_m[:, None], other=0.0)
        acc_t = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        row_t = tl.zeros([BLOCK_M], dtype=tl.float32)
    kv_base = bh * N_K * HEAD_DIM
    for start_n in range(0, N_K, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N_K
        kv_ptrs = kv_base + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
        k = tl.load(K + kv_ptrs, mask=mask_n[:, None], other=0.0)
        v = tl.load(V + kv_ptrs, mask=mask_n[:, None], other=0.0)
        mask_mn = mask_m[:, None] & mask_n[None, :]
        s = masked_scores(q, k, Bias, b, h, offs_m, offs_n, mask_mn, mask_n, sb_b, sb_h, sb_m, sb_n, scale,
                          HAS_BIAS, IEEE)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + dot(p.to(v.dtype), v, IEEE)
        if JVP:
            tk = tl.load(TK + kv_ptrs, mask=mask_n[:, None], other=0.0)
            tv = tl.load(TV + kv_ptrs, mask=mask_n[:, None], other=0.0)
            ts = tangent_scores(q, k, tq, tk, TBias, b, h, offs_m, offs_n, mask_mn,
                                stb_b, stb_h, stb_m, stb_n, scale, HAS_TBIAS, IEEE)
            pts = p * ts
            acc_t = acc_t * alpha[:, None] + dot(pts.to(v.dtype), v, IEEE) + dot(p.to(tv.dtype), tv, IEEE)
            row_t = row_t * alpha + tl.sum(pts, 1)
        m_i = m_new
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    o = acc / l_safe[:, None]
    lse = tl.where(l_i > 0, m_i + tl.log(l_safe), float("inf"))
    row_ptrs = bh * N_Q + offs_m
    tl.store(O + q_ptrs, o.to(O.dtype.element_ty), mask=mask_m[:, None])
    tl.store(LSE + row_ptrs, lse, mask=mask_m)
    if JVP:
        t_lse = row_t / l_safe
        t_o = acc_t / l_safe[:, None] - t_lse[:, None] * o
        tl.store(TO + q_ptrs, t_o.to(TO.dtype.element_ty), mask=mask_m[:, None])
        tl.store(TLSE + row_ptrs, t_lse, mask=mask_m)


def _launch(q, k, v, bias, scale, tangents):
    check_device(q, k, v, bias)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    shape = (batch, heads, n_q, n_k)
    bias4, sb = bias_4d(bias, shape)
    o = torch.empty_like(q)
    lse = torch.empty((batch, heads, n_q), device=q.device, dtype=torch.float32)
    jvp = tangents is not None
    if jvp:
        tq, tk, tv, tbias = tangents
        tq = torch.zeros_like(q) if tq is None else tq.contiguous()
        tk = torch.zeros_like(k) if tk is None else tk.contiguous()
        tv = torch.zeros_like(v) if tv is None else tv.contiguous()
        tbias4, stb = bias_4d(tbias, shape)
        t_o = torch.empty_like(q)
        t_lse = torch.empty_like(lse)
    else:
        tq = tk = tv = q
        tbias4, stb, t_o, t_lse = None, (0, 0, 0, 0), o, lse
    grid = lambda meta: (triton.cdiv(n_q, meta["BLOCK_M"]), batch * heads)  # noqa: E731
    attention_fwd_kernel[grid](
        q, k, v, bias4 if bias4 is not None else q, tq, tk, tv,
        tbias4 if tbias4 is not None else q, o, lse, t_o, t_lse,
        *sb, *stb, heads, n_q, n_k, float(scale),
        HAS_BIAS=bias4 is not None, HAS_TBIAS=tbias4 is not None, JVP=jvp,
        IEEE=is_ieee(q.dtype), HEAD_DIM=head_dim,
    )
    return (o, lse, t_o, t_lse) if jvp else (o, lse)


def attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias, scale: float):
    """(O, lse) for q/k/v (B, H, N, D), bias broadcastable to (B, H, N_q, N_k) or None."""
    return _launch(q, k, v, bias, scale, None)


def attention_fwd_jvp(q, k, v, bias, scale, t_q, t_k, t_v, t_bias):
    """(O, lse, O', lse') in one pass; missing tangents (None) count as zero."""
    return _launch(q, k, v, bias, scale, (t_q, t_k, t_v, t_bias))

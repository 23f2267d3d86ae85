"""Composite-torch attention primitives, streaming over key blocks (the CPU path).

Every function here is made of plain differentiable, vmappable torch ops and never holds more
than an (…, N, block) slice of the attention matrix, so its memory is O(N * block) per head.
They compute the same four primitives as the Triton kernels in ``kernels/attention_*.py``:

    fwd:      O, lse                    from Q, K, V, B
    fwd_jvp:  O, lse, dO/dt, dlse/dt    from Q, K, V, B and their tangents
    bwd:      dQ, dK, dV, dB            from Q, K, V, B, O, lse and the cotangent dO
    bwd_jvp:  tangents of (dQ, dK, dV, dB) from the tangents of Q, K, V, B and dO

Notation (per batch and head): S = scale * Q K^T + B, P = softmax(S), O = P V,
lse = logsumexp(S).  Tangents carry a ``t_`` prefix.

A fully masked query row (every score -inf) outputs O = 0, like SDPA, with zero gradients and
tangents; its lse is stored as +inf, so that P = exp(S - lse) = 0 in every later pass (no 0/0).
``bias`` is either None or a tensor already broadcastable to (B, H, N, N); the bias gradient is
reduced to the bias's own shape.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

DEFAULT_BLOCK = 128


def _blocks(n: int, block: int):
    for start in range(0, n, block):
        yield start, min(start + block, n)


def _bias_cols(bias: Optional[Tensor], start: int, stop: int) -> Optional[Tensor]:
    if bias is None:
        return None
    if bias.shape[-1] == 1:  # broadcast along keys
        return bias
    return bias[..., start:stop]


def _scores(q: Tensor, k_blk: Tensor, bias_blk: Optional[Tensor], scale: float) -> Tensor:
    s = torch.matmul(q, k_blk.transpose(-1, -2)) * scale
    if bias_blk is not None:
        s = s + bias_blk
    return s


def _reduce_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum a (B, H, N, cols) gradient down to a broadcastable bias block shape."""
    lead = grad.dim() - len(shape)
    if lead > 0:
        grad = grad.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad


def _bias_grad_accumulate(parts: list[tuple[int, int, Tensor]], bias: Tensor) -> Tensor:
    """Assemble per-key-block bias gradients into the bias's shape."""
    if bias.shape[-1] == 1:
        total = parts[0][2]
        for _, _, g in parts[1:]:
            total = total + g
        return total.reshape(bias.shape)
    return torch.cat([g for _, _, g in parts], dim=-1).reshape(bias.shape)


def _safe_max(m: Tensor) -> Tensor:
    # Rows whose scores are all -inf (fully masked) would give inf - inf = nan.
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _safe_sum(l: Tensor) -> Tensor:
    # l = 0 only on fully masked rows, whose accumulators are 0 too: dividing by 1 gives O = 0.
    return torch.where(l > 0, l, torch.ones_like(l))


def _row_lse(m: Tensor, l: Tensor) -> Tensor:
    """logsumexp of each row from its running max and sum; +inf on fully masked rows (l = 0)."""
    lse = _safe_max(m) + torch.log(_safe_sum(l))
    return torch.where(l > 0, lse, torch.full_like(lse, float("inf"))).squeeze(-1)


def fwd(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], scale: float,
        block: int = DEFAULT_BLOCK) -> tuple[Tensor, Tensor]:
    """O (B, H, N, D) and lse (B, H, N) by online softmax over key blocks."""
    n_keys = k.shape[-2]
    m = l = acc = None
    for start, stop in _blocks(n_keys, block):
        s = _scores(q, k[..., start:stop, :], _bias_cols(bias, start, stop), scale)
        m_blk = s.amax(dim=-1, keepdim=True)
        m_new = m_blk if m is None else torch.maximum(m, m_blk)
        m_safe = _safe_max(m_new)
        p = torch.exp(s - m_safe)
        pv = torch.matmul(p, v[..., start:stop, :])
        if m is None:
            l, acc = p.sum(dim=-1, keepdim=True), pv
        else:
            alpha = torch.exp(m - m_safe)
            l = l * alpha + p.sum(dim=-1, keepdim=True)
            acc = acc * alpha + pv
        m = m_new
    o = acc / _safe_sum(l)
    return o, _row_lse(m, l)


def fwd_jvp(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], scale: float,
            t_q: Optional[Tensor], t_k: Optional[Tensor], t_v: Optional[Tensor],
            t_bias: Optional[Tensor], block: int = DEFAULT_BLOCK
            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """O, lse and their tangents in one streaming pass.

    With dS = scale (dQ K^T + Q dK^T) + dB: dlse = rowsum(P * dS) and
    dO = P (dS - dlse) V + P dV = (sum_j p_j dS_j V_j + sum_j p_j dV_j) / l - dlse * O,
    so three extra accumulators (sum p dS V, sum p dV, sum p dS) ride the same rescaling.
    """
    n_keys = k.shape[-2]
    m = l = acc = acc_t = row_t = None
    for start, stop in _blocks(n_keys, block):
        k_blk, v_blk = k[..., start:stop, :], v[..., start:stop, :]
        s = _scores(q, k_blk, _bias_cols(bias, start, stop), scale)
        t_s = _tangent_scores(q, k_blk, t_q, t_k, _bias_cols(t_bias, start, stop), scale, s,
                              start, stop)
        m_blk = s.amax(dim=-1, keepdim=True)
        m_new = m_blk if m is None else torch.maximum(m, m_blk)
        m_safe = _safe_max(m_new)
        p = torch.exp(s - m_safe)
        p_ts = p * t_s
        pv = torch.matmul(p, v_blk)
        pv_t = torch.matmul(p_ts, v_blk)
        if t_v is not None:
            pv_t = pv_t + torch.matmul(p, t_v[..., start:stop, :])
        if m is None:
            l, acc, acc_t, row_t = p.sum(-1, keepdim=True), pv, pv_t, p_ts.sum(-1, keepdim=True)
        else:
            alpha = torch.exp(m - m_safe)
            l = l * alpha + p.sum(-1, keepdim=True)
            acc = acc * alpha + pv
            acc_t = acc_t * alpha + pv_t
            row_t = row_t * alpha + p_ts.sum(-1, keepdim=True)
        m = m_new
    l_safe = _safe_sum(l)
    o = acc / l_safe
    t_lse = row_t / l_safe
    t_o = acc_t / l_safe - t_lse * o
    return o, _row_lse(m, l), t_o, t_lse.squeeze(-1)


def _tangent_scores(q: Tensor, k_blk: Tensor, t_q: Optional[Tensor], t_k_full: Optional[Tensor],
                    t_bias_blk: Optional[Tensor], scale: float, like: Tensor,
                    start: Optional[int] = None, stop: Optional[int] = None) -> Tensor:
    t_s = None
    if t_q is not None:
        t_s = torch.matmul(t_q, k_blk.transpose(-1, -2)) * scale
    if t_k_full is not None:
        t_k_blk = t_k_full if start is None else t_k_full[..., start:stop, :]
        term = torch.matmul(q, t_k_blk.transpose(-1, -2)) * scale
        t_s = term if t_s is None else t_s + term
    if t_bias_blk is not None:
        t_s = t_bias_blk.expand_as(like) if t_s is None else t_s + t_bias_blk
    return torch.zeros_like(like) if t_s is None else t_s


def bwd(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], o: Tensor, lse: Tensor,
        grad_o: Tensor, scale: float, bias_requires_grad: bool,
        block: int = DEFAULT_BLOCK) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """dQ, dK, dV (and dB if asked) for the full (non-causal) key range, one key block at a time."""
    delta = (grad_o * o).sum(-1, keepdim=True)
    lse = lse.unsqueeze(-1)
    n_keys = k.shape[-2]
    grad_q = None
    grad_k, grad_v, grad_b = [], [], []
    for start, stop in _blocks(n_keys, block):
        k_blk, v_blk = k[..., start:stop, :], v[..., start:stop, :]
        bias_blk = _bias_cols(bias, start, stop)
        p = torch.exp(_scores(q, k_blk, bias_blk, scale) - lse)
        grad_v.append(torch.matmul(p.transpose(-1, -2), grad_o))
        grad_s = p * (torch.matmul(grad_o, v_blk.transpose(-1, -2)) - delta)
        term = torch.matmul(grad_s, k_blk) * scale
        grad_q = term if grad_q is None else grad_q + term
        grad_k.append(torch.matmul(grad_s.transpose(-1, -2), q) * scale)
        if bias_requires_grad:
            grad_b.append((start, stop, _reduce_to(grad_s, bias_blk.shape)))
    grad_bias = _bias_grad_accumulate(grad_b, bias) if bias_requires_grad else None
    return grad_q, torch.cat(grad_k, dim=-2), torch.cat(grad_v, dim=-2), grad_bias


def bwd_jvp(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], grad_o: Tensor,
            scale: float, bias_requires_grad: bool,
            t_q: Optional[Tensor], t_k: Optional[Tensor], t_v: Optional[Tensor],
            t_bias: Optional[Tensor], t_grad_o: Optional[Tensor],
            block: int = DEFAULT_BLOCK) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Tangents of (dQ, dK, dV, dB) = bwd(Q, K, V, B, dO) along (dQ', dK', dV', dB', d(dO)).

    A first streaming pass (fwd_jvp) gives O, lse, O' and lse'; then per key block
    P' = P (S' - lse'), dP = dO V^T, dP' = dO' V^T + dO V'^T, D = rowsum(dO O),
    D' = rowsum(dO' O + dO O'), dS = P (dP - D), dS' = P' (dP - D) + P (dP' - D').
    """
    o, lse, t_o, t_lse = fwd_jvp(q, k, v, bias, scale, t_q, t_k, t_v, t_bias, block)
    delta = (grad_o * o).sum(-1, keepdim=True)
    t_delta = (grad_o * t_o).sum(-1, keepdim=True)
    if t_grad_o is not None:
        t_delta = t_delta + (t_grad_o * o).sum(-1, keepdim=True)
    lse, t_lse = lse.unsqueeze(-1), t_lse.unsqueeze(-1)
    n_keys = k.shape[-2]
    t_grad_q = None
    t_grad_k, t_grad_v, t_grad_b = [], [], []
    for start, stop in _blocks(n_keys, block):
        k_blk, v_blk = k[..., start:stop, :], v[..., start:stop, :]
        bias_blk = _bias_cols(bias, start, stop)
        s = _scores(q, k_blk, bias_blk, scale)
        p = torch.exp(s - lse)
        t_s = _tangent_scores(q, k_blk, t_q, t_k, _bias_cols(t_bias, start, stop), scale, s,
                              start, stop)
        t_p = p * (t_s - t_lse)
        grad_p = torch.matmul(grad_o, v_blk.transpose(-1, -2))
        t_grad_p = None
        if t_grad_o is not None:
            t_grad_p = torch.matmul(t_grad_o, v_blk.transpose(-1, -2))
        if t_v is not None:
            term = torch.matmul(grad_o, t_v[..., start:stop, :].transpose(-1, -2))
            t_grad_p = term if t_grad_p is None else t_grad_p + term
        grad_s = p * (grad_p - delta)
        t_grad_s = t_p * (grad_p - delta)
        t_grad_s = t_grad_s - p * t_delta if t_grad_p is None else t_grad_s + p * (t_grad_p - t_delta)

        t_dv = torch.matmul(t_p.transpose(-1, -2), grad_o)
        if t_grad_o is not None:
            t_dv = t_dv + torch.matmul(p.transpose(-1, -2), t_grad_o)
        t_grad_v.append(t_dv)

        t_dq = torch.matmul(t_grad_s, k_blk)
        if t_k is not None:
            t_dq = t_dq + torch.matmul(grad_s, t_k[..., start:stop, :])
        t_dq = t_dq * scale
        t_grad_q = t_dq if t_grad_q is None else t_grad_q + t_dq

        t_dk = torch.matmul(t_grad_s.transpose(-1, -2), q)
        if t_q is not None:
            t_dk = t_dk + torch.matmul(grad_s.transpose(-1, -2), t_q)
        t_grad_k.append(t_dk * scale)
        if bias_requires_grad:
            t_grad_b.append((start, stop, _reduce_to(t_grad_s, bias_blk.shape)))
    t_grad_bias = _bias_grad_accumulate(t_grad_b, bias) if bias_requires_grad else None
    return t_grad_q, torch.cat(t_grad_k, dim=-2), torch.cat(t_grad_v, dim=-2), t_grad_bias

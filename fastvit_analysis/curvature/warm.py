"""Eigen-solver with explicit residuals and locking: Rayleigh-Ritz on a basis grown by residuals.

`residual_eigsh` keeps the basis Q [b, m, P] and its products W = C Q, so every Ritz pair's residual
‖C y − θ y‖ = ‖W s − θ Q s‖ is explicit (not a Lanczos estimate) at no extra product. Each step
multiplies the residual of the worst wanted, unconverged Ritz pair (orthogonalised against Q): from
one start vector this spans the same Krylov space as Lanczos. A problem whose wanted pairs all pass
is locked: its result is kept and it leaves the batched product (`matmat_rows`), so a chunk costs
the sum of its problems' needs, not b times the slowest one. Thick restart keeps the best Ritz
vectors and their products (no product is recomputed). A start block of several vectors is
accepted (e.g. Ritz vectors of a similar operator); measured on mini-batch Hessians it costs more
products than one start vector (bench/bench_curvature.py).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .krylov import gaussian, norms, project_out_
from .lanczos import EigshOutput, check_operator, check_top_k, check_which, order_by


def _orthonormal_rows(V: Tensor) -> Tensor:
    """[b, l, P] -> orthonormal rows spanning the same space (QR in float64 for stability)."""
    Q = torch.linalg.qr(V.transpose(1, 2).double()).Q
    return Q.transpose(1, 2).to(V.dtype).contiguous()


def _products(operator: Any, V: Tensor, rows: Tensor) -> Tensor:
    """Row i of V [a, P] times operator rows[i]: only the problems still running are multiplied."""
    if rows.numel() < getattr(operator, "num_operators", 1) and callable(getattr(operator, "matmat_rows", None)):
        return operator.matmat_rows(V.contiguous(), rows)
    if rows.numel() < getattr(operator, "num_operators", 1):   # no subset product: pad the finished rows
        full = V.new_zeros(operator.num_operators, V.shape[-1])
        full[rows] = V
        return operator.matmat(full)[rows]
    return operator.matmat(V.contiguous())


def residual_eigsh(operator: Any, V0: Tensor, k: int, *, which: str = "LM", tol: float = 1e-3,
                   max_basis: int | None = None, max_steps: int = 300,
                   generator: torch.Generator | None = None) -> EigshOutput:
    """k extreme eigenpairs of each of b operators (row i of a product goes to operator i).

    V0 [b, l, P]: start block (l >= 1 vectors per problem, any rank). A problem is finished when every
    wanted pair's explicit residual <= tol·max|θ|, or after `max_steps` products (the l start
    products included); finished problems are locked (their results kept, never multiplied again,
    through `operator.matmat_rows(V, rows)` where the operator has it). residual_estimates holds the
    explicit residuals; steps_per_problem [b] the products each problem used.
    """
    check_which(which)
    check_operator(operator)
    b, l, P = V0.shape
    check_top_k(k, P, max_steps)
    m = min(max_basis if max_basis is not None else max(20, 2 * k + 10), P)
    if l >= m:
        raise ValueError(f"the start block ({l} vectors) must be smaller than max_basis={m}")
    keep_count = min(m - 1, k + max(1, (m - k) // 2))
    device, dtype = V0.device, V0.dtype
    Q = V0.new_zeros(b, m, P)
    W = V0.new_zeros(b, m, P)
    T = torch.zeros(b, m, m, dtype=torch.float64, device=device)
    Q[:, :l] = _orthonormal_rows(V0)
    rows = torch.arange(b, device=device)                  # original index of each running problem
    for i in range(l):
        W[:, i] = _products(operator, Q[:, i], rows)
        T[:, :i + 1, i] = torch.bmm(Q[:, :i + 1], W[:, i].unsqueeze(-1)).squeeze(-1).double()
    size, steps = l, l
    tiny = torch.finfo(dtype).tiny
    kk = min(k, P)
    out_values = torch.full((b, kk), float("nan"), dtype=torch.float64, device=device)
    out_vectors = V0.new_zeros(b, kk, P)
    out_res = torch.full((b, kk), float("inf"), dtype=torch.float64, device=device)
    out_steps = torch.zeros(b, dtype=torch.long)
    while True:
        a = rows.numel()
        upper = torch.triu(T[:, :size, :size])
        theta, S = torch.linalg.eigh(upper + torch.triu(upper, 1).transpose(1, 2))
        order = order_by(theta, which)
        sel = order[:, :min(k, size)]
        S_sel = torch.gather(S, 2, sel.unsqueeze(1).expand(-1, size, -1)).to(dtype)       # [a, size, k']
        values = torch.gather(theta, 1, sel)
        Y = torch.bmm(S_sel.transpose(1, 2), Q[:, :size])                              # [a, k', P]
        R = torch.bmm(S_sel.transpose(1, 2), W[:, :size]) - values.to(dtype).unsqueeze(-1) * Y
        res = norms(R).double()
        scale = theta.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        done = res <= tol * scale
        finished = (done.all(dim=1) & (sel.shape[1] == k)) if sel.shape[1] == kk else torch.zeros_like(done[:, 0])
        if steps >= max_steps or size >= P:
            finished = torch.ones_like(finished)
        if bool(finished.any()):
            where, keep_rows = rows[finished], ~finished
            c = values.shape[1]
            out_values[where, :c], out_vectors[where, :c], out_res[where, :c] = (values[finished], Y[finished],
                                                                                 res[finished])
            out_steps[where.cpu()] = steps
            if not bool(keep_rows.any()):
                break
            rows, Q, W, T = rows[keep_rows], Q[keep_rows], W[keep_rows], T[keep_rows]   # lock the finished
            theta, S, order, res, done, R, scale = (t[keep_rows] for t in (theta, S, order, res, done, R, scale))
            a = rows.numel()
        worst = torch.where(done, torch.zeros_like(res), res / scale).argmax(dim=1)      # [a]
        r = R[torch.arange(a, device=device), worst].clone()                           # [a, P]
        if size == m:   # thick restart: keep the best Ritz vectors and their products
            keep = order[:, :keep_count]
            S_keep = torch.gather(S, 2, keep.unsqueeze(1).expand(-1, size, -1)).to(dtype)
            Q[:, :keep_count] = torch.bmm(S_keep.transpose(1, 2), Q[:, :size])
            W[:, :keep_count] = torch.bmm(S_keep.transpose(1, 2), W[:, :size])
            T.zero_()
            T[:, :keep_count, :keep_count] = torch.diag_embed(torch.gather(theta, 1, keep))
            size = keep_count
        project_out_(r, Q[:, :size])
        n = norms(r)
        broke = n <= 100 * torch.finfo(dtype).eps * res.max(dim=1).values.to(n.dtype).clamp_min(tiny)
        if bool(broke.any()):   # residual inside the basis: a fresh random direction for that problem
            fresh = gaussian((a, P), dtype=dtype, device=device, generator=generator)
            project_out_(fresh, Q[:, :size])
            r = torch.where(broke.unsqueeze(-1), fresh, r)
            n = norms(r)
        Q[:, size] = r / n.clamp_min(tiny).unsqueeze(-1)
        W[:, size] = _products(operator, Q[:, size], rows)
        T[:, :size + 1, size] = torch.bmm(Q[:, :size + 1], W[:, size].unsqueeze(-1)).squeeze(-1).double()
        size += 1
        steps += 1
    return EigshOutput(out_values, out_vectors, out_res, int(out_steps.max()), out_steps)

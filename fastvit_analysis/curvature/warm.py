"""Eigen-solver with warm starts: Rayleigh-Ritz on a basis that starts from a block of vectors.

`residual_eigsh` keeps the basis Q [b, m, P] and its products W = C Q, so every Ritz pair's residual
‖C y − θ y‖ = ‖W s − θ Q s‖ is explicit (not a Lanczos estimate), whatever the start block. Each step
multiplies the residual of the worst wanted, unconverged Ritz pair (orthogonalised against Q): from
one start vector this spans the same Krylov space as Lanczos; from a block of Ritz vectors of a similar
operator (the previous mini-batch's Hessian) it starts near the wanted eigenspace. Thick restart keeps
the best Ritz vectors and their products (no product is recomputed).
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


def residual_eigsh(operator: Any, V0: Tensor, k: int, *, which: str = "LM", tol: float = 1e-3,
                   max_basis: int | None = None, max_steps: int = 300,
                   generator: torch.Generator | None = None) -> EigshOutput:
    """k extreme eigenpairs of each of b operators (row i of a product goes to operator i).

    V0 [b, l, P]: start block (l >= 1 vectors per problem, any rank). Converged when every wanted
    pair's explicit residual <= tol·max|θ| (per problem), or after `max_steps` products per problem
    (the l start products included). residual_estimates holds those explicit residuals.
    """
    check_which(which)
    check_operator(operator)
    b, l, P = V0.shape
    check_top_k(k, P, max_steps)
    m = min(max_basis if max_basis is not None else max(20, 2 * k + 10), P)
    if l >= m:
        raise ValueError(f"the start block ({l} vectors) must be smaller than max_basis={m}")
    keep_count = min(m - 1, k + max(1, (m - k) // 2))
    Q = V0.new_zeros(b, m, P)
    W = V0.new_zeros(b, m, P)
    T = torch.zeros(b, m, m, dtype=torch.float64, device=V0.device)
    Q[:, :l] = _orthonormal_rows(V0)
    for i in range(l):
        W[:, i] = operator.matmat(Q[:, i].contiguous())
        T[:, :i + 1, i] = torch.bmm(Q[:, :i + 1], W[:, i].unsqueeze(-1)).squeeze(-1).double()
    size, steps = l, l
    tiny = torch.finfo(V0.dtype).tiny
    while True:
        upper = torch.triu(T[:, :size, :size])
        theta, S = torch.linalg.eigh(upper + torch.triu(upper, 1).transpose(1, 2))
        order = order_by(theta, which)
        sel = order[:, :min(k, size)]
        S_sel = torch.gather(S, 2, sel.unsqueeze(1).expand(-1, size, -1)).to(V0.dtype)   # [b, size, k']
        values = torch.gather(theta, 1, sel)
        Y = torch.bmm(S_sel.transpose(1, 2), Q[:, :size])                              # [b, k', P]
        R = torch.bmm(S_sel.transpose(1, 2), W[:, :size]) - values.to(V0.dtype).unsqueeze(-1) * Y
        res = norms(R).double()
        scale = theta.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        done = res <= tol * scale
        if (sel.shape[1] == k and bool(done.all())) or steps >= max_steps or size >= P:
            break
        worst = torch.where(done, torch.zeros_like(res), res / scale).argmax(dim=1)      # [b]
        r = R[torch.arange(b), worst].clone()                                           # [b, P]
        if size == m:   # thick restart: keep the best Ritz vectors and their products
            keep = order[:, :keep_count]
            S_keep = torch.gather(S, 2, keep.unsqueeze(1).expand(-1, size, -1)).to(V0.dtype)
            Q[:, :keep_count] = torch.bmm(S_keep.transpose(1, 2), Q[:, :size])
            W[:, :keep_count] = torch.bmm(S_keep.transpose(1, 2), W[:, :size])
            T.zero_()
            T[:, :keep_count, :keep_count] = torch.diag_embed(torch.gather(theta, 1, keep))
            size = keep_count
        project_out_(r, Q[:, :size])
        n = norms(r)
        broke = n <= 100 * torch.finfo(V0.dtype).eps * res.max(dim=1).values.to(n.dtype).clamp_min(tiny)
        if bool(broke.any()):   # residual inside the basis: a fresh random direction for that problem
            fresh = gaussian((b, P), dtype=V0.dtype, device=V0.device, generator=generator)
            project_out_(fresh, Q[:, :size])
            r = torch.where(broke.unsqueeze(-1), fresh, r)
            n = norms(r)
        Q[:, size] = r / n.clamp_min(tiny).unsqueeze(-1)
        W[:, size] = operator.matmat(Q[:, size].contiguous())
        T[:, :size + 1, size] = torch.bmm(Q[:, :size + 1], W[:, size].unsqueeze(-1)).squeeze(-1).double()
        size += 1
        steps += 1
    return EigshOutput(values, Y, res, steps)

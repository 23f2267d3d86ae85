"""Lanczos with full re-orthogonalisation and thick restarts, for b independent symmetric operators at once.

Solvers take an operator (the protocol of curvature.operator.CurvatureOperator: `matmat(V [b, P])
-> [b, P]`, `shape`, `dtype`, `device`), multiplying row i by operator i: one operator for b probes
of one Hessian (SLQ), or b mini-batch Hessians for per-mini-batch spectra. The Krylov bases live in one
[b, m + 1, P] buffer; the projected matrix T = QᵀHQ is formed column by column from the Gram-Schmidt
coefficients, so thick restarts (keep the best Ritz vectors, continue from the residual direction) need no special case.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from ..common.progress import progress_bar
from .krylov import combine, gaussian, norms, project_out_

WHICH = ("LA", "SA", "LM")


class LinearOperator(Protocol):
    """What every solver takes (curvlinops-style): a batched product and its metadata."""

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def matmat(self, V: Tensor) -> Tensor: ...


def check_operator(operator: Any) -> Any:
    """TypeError unless `operator` has matmat(V [k, P]) and shape (P, P)."""
    if not callable(getattr(operator, "matmat", None)) or getattr(operator, "shape", None) is None:
        raise TypeError(f"operator must have matmat(V [k, P]) -> [k, P] and shape (P, P) (e.g. a "
                        f"HessianOperator), got {type(operator).__name__}")
    return operator


def check_top_k(top_k: Any, num_params: int, max_hvp: Any = None) -> int:
    """The one top_k check: an int in [1, num_params), and a budget of at least top_k products
    (Lanczos needs top_k products for top_k Ritz values)."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k < num_params:
        raise ValueError(f"top_k must be an int in [1, num_params) = [1, {num_params}) (smaller than the "
                         f"number of parameters), got {top_k!r}")
    if max_hvp is not None:
        if not isinstance(max_hvp, int) or isinstance(max_hvp, bool) or max_hvp < top_k:
            raise ValueError(f"max_hvp must be an int >= top_k={top_k} (the solver needs at least top_k "
                             f"products to find top_k eigenvalues), got {max_hvp!r}")
    return top_k


def explicit_residuals(operator: Any, values: Tensor, vectors: Tensor) -> Tensor:
    """‖C_i v_ic − λ_ic v_ic‖ -> [b, k] (float64, CPU) for values [b, k] and unit vectors [b, k, P].

    One operator: one matmat of all b·k vectors; one operator per row (MiniBatchHessians): k products
    of [b, P].
    """
    b, k, P = vectors.shape
    if not getattr(operator, "one_operator_per_row", False):
        HV = operator.matmat(vectors.reshape(b * k, P).contiguous()).reshape(b, k, P)
    else:
        HV = torch.stack([operator.matmat(vectors[:, c].contiguous()) for c in range(k)], dim=1)
    lam = values.to(device=HV.device, dtype=HV.dtype).unsqueeze(-1)
    return torch.linalg.vector_norm(HV - lam * vectors, dim=-1).double().cpu()


def check_which(which: str) -> str:
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH} (largest algebraic, smallest algebraic, largest "
                         f"magnitude), got {which!r}")
    return which


def order_by(values: Tensor, which: str) -> Tensor:
    """Indices [.., n] that sort the last dim of `values` best-first for `which`."""
    if which == "LA":
        return torch.argsort(values, dim=-1, descending=True)
    if which == "SA":
        return torch.argsort(values, dim=-1)
    return torch.argsort(values.abs(), dim=-1, descending=True)


class KrylovBasis:
    """Orthonormal Krylov bases of b problems in one buffer, and their projected matrices."""

    def __init__(self, v0: Tensor, max_basis: int):
        b, P = v0.shape
        self.b, self.P, self.m = b, P, max_basis
        self.Q = v0.new_zeros(b, max_basis + 1, P)
        self.T = torch.zeros(b, max_basis + 1, max_basis + 1, dtype=torch.float64, device=v0.device)
        self.Q[:, 0] = v0 / norms(v0).unsqueeze(-1)
        self.size = 1                  # vectors in the basis; the last one is not yet multiplied
        self.beta = torch.zeros(b, dtype=torch.float64, device=v0.device)
        self.norm_estimate = torch.zeros(b, dtype=v0.dtype, device=v0.device)  # max ‖Hq‖ seen ≈ ‖H‖
        self.broke = False             # the last step found an invariant subspace (in some problem)
        self._eps = 100 * torch.finfo(v0.dtype).eps

    def step(self, operator: Any, generator: torch.Generator | None = None) -> None:
        """Multiply the newest basis vector, orthogonalise, append the next one (b products)."""
        j = self.size - 1
        w = operator.matmat(self.Q[:, j].clone())
        self.norm_estimate = torch.maximum(self.norm_estimate, norms(w))
        scale = self.norm_estimate
        h = project_out_(w, self.Q[:, :j + 1])
        beta = norms(w)
        self.T[:, :j + 1, j] = h.double()
        broke = beta <= self._eps * scale.clamp_min(torch.finfo(w.dtype).tiny)
        self.broke = bool(broke.any())
        if self.broke:
            # Invariant subspace found: continue from a fresh random direction (coupling 0).
            fresh = gaussian(tuple(w.shape), dtype=w.dtype, device=w.device, generator=generator)
            project_out_(fresh, self.Q[:, :j + 1])
            fresh /= norms(fresh).clamp_min(torch.finfo(w.dtype).tiny).unsqueeze(-1)
            w = torch.where(broke.unsqueeze(-1), fresh, w / beta.clamp_min(torch.finfo(w.dtype).tiny).unsqueeze(-1))
            beta = torch.where(broke, torch.zeros_like(beta), beta)
        else:
            w /= beta.unsqueeze(-1)
        self.Q[:, j + 1] = w
        self.T[:, j + 1, j] = beta.double()
        self.beta = beta.double()
        self.size += 1

    @property
    def full(self) -> bool:
        return self.size > self.m

    def projected(self) -> Tensor:
        """The symmetric projected matrix of the multiplied vectors, [b, j, j]."""
        j = self.size - 1
        T = self.T[:, :j, :j]
        return 0.5 * (T + T.transpose(1, 2))

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Ritz values [b, j] (ascending) and their coordinate vectors S [b, j, j]."""
        return torch.linalg.eigh(self.projected())

    def restart(self, keep: Tensor, theta: Tensor, S: Tensor) -> None:
        """Thick restart: keep the Ritz vectors with coordinates S[:, :, keep] [b, j, l], continue."""
        j = self.size - 1
        l = keep.shape[1]
        S_keep = torch.gather(S, 2, keep.unsqueeze(1).expand(-1, j, -1))       # [b, j, l]
        theta_keep = torch.gather(theta, 1, keep)                              # [b, l]
        coupling = self.beta.unsqueeze(-1) * S_keep[:, -1, :]                  # [b, l]
        Y = combine(S_keep.transpose(1, 2), self.Q[:, :j])                     # [b, l, P]
        nxt = self.Q[:, j].clone()
        self.Q[:, :l] = Y
        self.Q[:, l] = nxt
        self.T.zero_()
        self.T[:, :l, :l] = torch.diag_embed(theta_keep)
        self.T[:, l, :l] = coupling
        self.size = l + 1

    def ritz_vectors(self, S_sel: Tensor) -> Tensor:
        """Ritz vectors for coordinates S_sel [b, j, k] -> [b, k, P]."""
        j = self.size - 1
        return combine(S_sel.transpose(1, 2), self.Q[:, :j])


@dataclass
class EigshOutput:
    eigenvalues: Tensor     # [b, k] ordered best-first for `which`
    eigenvectors: Tensor    # [b, k, P]
    residual_estimates: Tensor  # [b, k]
    n_steps: int            # products per problem spent in the Krylov iteration (the most of any problem)
    steps_per_problem: Tensor | None = None   # [b] products each problem used, where problems lock


def lanczos_eigsh(operator: LinearOperator, v0: Tensor, k: int, *, which: str = "LA", tol: float = 1e-4,
                  max_basis: int | None = None, max_steps: int = 1000,
                  generator: torch.Generator | None = None, progress: bool = False,
                  desc: str = "lanczos") -> EigshOutput:
    """k extreme eigenpairs of each of b symmetric operators, by thick-restart Lanczos.

    Stops when every wanted Ritz pair's residual estimate β|s_last| <= tol·max|θ| (per problem) or
    after `max_steps` products per problem. v0 [b, P] are the start vectors.
    """
    check_which(which)
    check_operator(operator)
    b, P = v0.shape
    check_top_k(k, P, max_steps)
    m = max_basis if max_basis is not None else max(20, 2 * k + 10)
    m = min(m, P)
    if m < k + 1 and m < P:
        raise ValueError(f"max_basis must exceed top_k + 1 = {k + 1}, got {max_basis}")
    keep_count = min(m - 1, k + max(1, (m - k) // 2))
    basis = KrylovBasis(v0, m)
    steps = 0
    bar = progress_bar(total=max_steps, desc=desc, progress=progress, unit="hvp")
    est = torch.full((b, k), float("inf"), dtype=torch.float64, device=v0.device)
    while True:
        basis.step(operator, generator)
        steps += 1
        bar.update(1)
        theta, S = basis.ritz()
        j = theta.shape[1]
        order = order_by(theta, which)
        sel = order[:, :min(k, j)]
        scale = theta.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        last = torch.gather(S[:, -1, :], 1, sel).abs()
        est = basis.beta.unsqueeze(-1) * last
        # After a breakdown the Ritz pairs are exact on an invariant subspace only; keep exploring
        # its complement (other eigenvalues, multiplicities) unless the space is exhausted.
        exhausted = j >= P or (basis.full and m >= P)
        if (j >= k and (not basis.broke or exhausted) and bool((est <= tol * scale).all())) \
                or steps >= max_steps or exhausted:
            break
        if basis.full:
            basis.restart(order[:, :keep_count], theta, S)
    bar.close()
    S_sel = torch.gather(S, 2, sel.unsqueeze(1).expand(-1, S.shape[1], -1))
    vectors = basis.ritz_vectors(S_sel)
    values = torch.gather(theta, 1, sel)
    return EigshOutput(values, vectors, est, steps)


def lanczos_tridiagonal(operator: LinearOperator, v0: Tensor, steps: int,
                        generator: torch.Generator | None = None, progress: bool = False,
                        desc: str = "lanczos") -> Tensor:
    """`steps` Lanczos steps (full re-orthogonalisation) from v0 [b, P] -> projected T [b, s, s] (float64)."""
    check_operator(operator)
    b, P = v0.shape
    steps = min(steps, P)
    basis = KrylovBasis(v0, steps)
    for _ in progress_bar(range(steps), desc=desc, progress=progress, unit="hvp"):
        basis.step(operator, generator)
    return basis.projected()

"""PyHessian's power iteration with deflation, kept as a baseline (docs/methods.md §1).

For each of top_k eigenvalues: a random normal start vector, Gram-Schmidt against the eigenvectors
already found, at most `max_iter` products, stop when the Rayleigh quotient's relative change is
below `tol` (PyHessian: 100 and 1e-3). It finds eigenvalues of largest magnitude with their sign but,
on clustered spectra of mixed sign, stops early at values that are neither the top ones nor converged.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..common.progress import progress_bar
from .krylov import gaussian
from .lanczos import check_operator, check_top_k


def power_iteration(operator: Any, k: int, *, max_iter: int = 100, tol: float = 1e-3,
                    generator: torch.Generator | None = None,
                    progress: bool = False) -> tuple[Tensor, Tensor, int]:
    """`operator` (matmat, shape, dtype, device; see lanczos.LinearOperator) -> (eigenvalues [k] in
    the order found, eigenvectors [k, P], number of products)."""
    check_operator(operator)
    num_params, dtype, device = operator.shape[0], operator.dtype, operator.device
    check_top_k(k, num_params)
    found = torch.zeros(k, num_params, dtype=dtype, device=device)
    values = torch.zeros(k, dtype=torch.float64)
    n_hvp = 0
    for i in progress_bar(range(k), desc="power iteration", progress=progress, unit="eig"):
        v = gaussian((num_params,), dtype=dtype, device=device, generator=generator)
        v /= torch.linalg.vector_norm(v)
        eig = None
        for _ in range(max_iter):
            if i:  # PyHessian orthonormalises once against the found eigenvectors (classical GS)
                v -= found[:i].T @ (found[:i] @ v)
                v /= torch.linalg.vector_norm(v)
            hv = operator.matmat(v.unsqueeze(0))[0]
            n_hvp += 1
            rayleigh = float(torch.dot(hv, v))
            v = hv / torch.linalg.vector_norm(hv).clamp_min(torch.finfo(dtype).tiny)
            if eig is not None and abs(eig - rayleigh) / (abs(eig) + 1e-6) < tol:
                break  # PyHessian keeps the previous quotient
            eig = rayleigh
        values[i] = eig
        found[i] = v
    return values, found, n_hvp

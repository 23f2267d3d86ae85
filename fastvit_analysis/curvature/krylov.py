"""Flat-vector work of the Krylov solvers on contiguous buffers: probes, Gram-Schmidt, norms.

Every function works on a batch of b independent problems at once: vectors are [b, P], a basis is
[b, j, P] (a slice of one preallocated [b, m, P] buffer), so orthogonalisation is two bmm's, never a
Python loop over parameter tensors.
"""
from __future__ import annotations

import torch
from torch import Tensor


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def rademacher(shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device,
               generator: torch.Generator | None = None) -> Tensor:
    """Random ±1 entries of the given shape."""
    bits = torch.randint(0, 2, shape, generator=generator, device=device, dtype=torch.int8)
    return bits.to(dtype).mul_(2).sub_(1)


def gaussian(shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device,
             generator: torch.Generator | None = None) -> Tensor:
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def project_out_(w: Tensor, basis: Tensor) -> Tensor:
    """w [b, P] -= basis^T (basis w), twice (CGS2, stable to rounding). basis [b, j, P] orthonormal.

    Returns the total coefficients h [b, j] (the projection of the original w on the basis).
    """
    if basis.shape[1] == 0:
        return w.new_zeros(w.shape[0], 0)
    h = torch.bmm(basis, w.unsqueeze(-1))            # [b, j, 1]
    w.sub_(torch.bmm(basis.transpose(1, 2), h).squeeze(-1))
    h2 = torch.bmm(basis, w.unsqueeze(-1))
    w.sub_(torch.bmm(basis.transpose(1, 2), h2).squeeze(-1))
    return (h + h2).squeeze(-1)


def norms(w: Tensor) -> Tensor:
    """Euclidean norm of each row of w [b, P] -> [b]."""
    return torch.linalg.vector_norm(w, dim=-1)


def combine(coeffs: Tensor, basis: Tensor) -> Tensor:
    """Linear combinations coeffs [b, l, j] of basis [b, j, P] -> [b, l, P]."""
    return torch.bmm(coeffs.to(basis.dtype), basis)

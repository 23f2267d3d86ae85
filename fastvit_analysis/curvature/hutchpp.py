"""Randomised trace estimators on a batched operator: Hutchinson (Rademacher) and Hutch++.

Both take an operator (matmat(V [k, P]) -> [k, P], shape, dtype, device; see lanczos.LinearOperator). Both
return (value, standard error, products used); the standard error is that of the random (Hutchinson) part,
sample std / sqrt(probes).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..common.progress import progress_bar
from .krylov import rademacher
from .lanczos import check_operator


def _quadratic_forms(operator: Any, Z: Tensor, chunk: int, progress: bool, desc: str) -> Tensor:
    """z_iᵀ H z_i for rows of Z [k, P], in chunks of `chunk` vectors."""
    out = []
    for s in progress_bar(range(0, Z.shape[0], chunk), desc=desc, progress=progress, unit="chunk"):
        block = Z[s:s + chunk]
        out.append((operator.matmat(block) * block).sum(-1))
    return torch.cat(out).double()


def _mean_and_stderr(samples: Tensor) -> tuple[float, float]:
    n = samples.numel()
    mean = float(samples.mean())
    stderr = float(samples.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("inf")
    return mean, stderr


def hutchinson(operator: Any, num_probes: int, *, generator: torch.Generator | None = None, chunk: int = 8,
               progress: bool = False) -> tuple[float, float, int]:
    """Hutchinson with Rademacher probes: mean and standard error of z_iᵀ C z_i."""
    check_operator(operator)
    num_params, dtype, device = operator.shape[0], operator.dtype, operator.device
    Z = rademacher((num_probes, num_params), dtype=dtype, device=device, generator=generator)
    samples = _quadratic_forms(operator, Z, chunk, progress, "hutchinson")
    mean, stderr = _mean_and_stderr(samples)
    return mean, stderr, num_probes


def hutch_plus_plus(operator: Any, num_probes: int, *, generator: torch.Generator | None = None,
                    chunk: int = 8, progress: bool = False) -> tuple[float, float, int]:
    """Hutch++ (Meyer et al. 2021): num_probes products split in thirds: sketch S, exact trace of
    QᵀHQ on the range Q of HS, Hutchinson on the deflated rest (I − QQᵀ)H(I − QQᵀ)."""
    check_operator(operator)
    num_params, dtype, device = operator.shape[0], operator.dtype, operator.device
    if num_probes < 3:
        raise ValueError(f"num_probes must be >= 3 for hutch++, got {num_probes}")
    s = num_probes // 3
    g = num_probes - 2 * s
    S = rademacher((s, num_params), dtype=dtype, device=device, generator=generator)
    HS = torch.cat([operator.matmat(S[i:i + chunk]) for i in range(0, s, chunk)])
    Q, _ = torch.linalg.qr(HS.T)                              # [P, s]
    Qt = Q.T.contiguous()                                     # [s, P]
    HQ = torch.cat([operator.matmat(Qt[i:i + chunk]) for i in range(0, s, chunk)])
    low_rank = float((HQ * Qt).sum().double())
    G = rademacher((g, num_params), dtype=dtype, device=device, generator=generator)
    G = G - (G @ Q) @ Qt
    samples = _quadratic_forms(operator, G, chunk, progress, "hutch++")
    mean, stderr = _mean_and_stderr(samples)
    return low_rank + mean, stderr, 2 * s + g

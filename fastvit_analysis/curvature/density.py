"""Spectral density of the Hessian by stochastic Lanczos quadrature (SLQ, docs/methods.md §1).

For each Rademacher probe v (normalised), m Lanczos steps give T; its eigenvalues are the quadrature
nodes and the squared first components of its eigenvectors the weights, so that
Σ_i w_i f(θ_i) ≈ vᵀ f(H) v. Averaged over probes and smoothed with a Gaussian kernel this is the
eigenvalue density (integrating to 1). Probes run together: one batched HVP pass per step.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fastvit_analysis import hessian_density
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    >>> data = (torch.randn(32, 4, dtype=torch.float64), torch.randint(3, (32,)))
    >>> res = hessian_density(model, nn.CrossEntropyLoss(), data, num_probes=2, steps=20, progress=False)
    >>> grid = torch.linspace(-1, 2, 500, dtype=torch.float64)
    >>> round(float(torch.trapezoid(res.density(grid, sigma=0.05), grid)), 3)
    1.0
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..common.deprecation import module_aliases, renamed_fields, renamed_kwargs
from ..common.intervals import ArrayEstimate, Estimate, bootstrap_interval
from ..common.outputs import OutputFn
from ..common.results import Result
from .krylov import make_generator, rademacher
from .lanczos import lanczos_tridiagonal
from .operator import CurvatureOperator, HessianOperator, LossFn


@renamed_fields(n_hvp="num_hvp")
@dataclass
class HessianDensityResult(Result):
    """SLQ nodes [probes, steps] and weights [probes, steps] (each probe's weights sum to 1), kept
    per probe so that `density_band` and `summary` can resample probes."""

    nodes: Tensor
    weights: Tensor
    num_hvp: int
    num_params: int

    def density(self, grid: Tensor, sigma: float | None = None) -> Tensor:
        """Smoothed density on `grid` [G]: mean over probes of Σ_i w_i N(grid; θ_i, σ²) -> [G].

        sigma defaults to 1% of the node range (at least 1e-6).
        """
        grid = torch.as_tensor(grid, dtype=torch.float64)
        sigma = self._sigma(sigma)
        diff = grid.view(-1, 1, 1) - self.nodes.double().unsqueeze(0)
        kernel = torch.exp(-0.5 * (diff / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (kernel * self.weights.double().unsqueeze(0)).sum(-1).mean(-1)

    def probe_densities(self, grid: Tensor, sigma: float | None = None) -> Tensor:
        """Each probe's smoothed density on `grid` [G] -> [probes, G] (their mean is `density`)."""
        grid = torch.as_tensor(grid, dtype=torch.float64)
        sigma = self._sigma(sigma)
        diff = grid.view(1, -1, 1) - self.nodes.double().unsqueeze(1)
        kernel = torch.exp(-0.5 * (diff / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (kernel * self.weights.double().unsqueeze(1)).sum(-1)

    def density_band(self, grid: Tensor, sigma: float | None = None, *, seed: int = 0,
                     num_resamples: int = 1000) -> ArrayEstimate:
        """Pointwise 95% band of the density on `grid` [G]: bootstrap over probes (docs/methods.md §5).

        value [G] equals `density(grid, sigma)`; ci95 [G, 2]; n = probes (NaN band for one probe).
        """
        per_probe = self.probe_densities(grid, sigma).numpy()
        return bootstrap_interval(per_probe, seed=seed, num_resamples=num_resamples)

    def summary(self, *, seed: int = 0, num_resamples: int = 1000) -> dict[str, Estimate]:
        """{"negative_mass", "mean"}: the quadrature mass on eigenvalues < 0 (fraction of the
        spectrum) and the spectral mean tr(H)/P, each averaged over probes with a bootstrap interval
        over probes, n = probes.

        Example:
            >>> r = HessianDensityResult(torch.tensor([[-1.0, 2.0], [-1.0, 3.0]]),
            ...                    torch.tensor([[0.5, 0.5], [0.25, 0.75]]), 4, 10)
            >>> s = r.summary()
            >>> s["negative_mass"].value, s["mean"].value, s["mean"].n
            (0.375, 1.25, 2)
        """
        nodes, weights = self.nodes.double(), self.weights.double()
        negative = (weights * (nodes < 0)).sum(-1).numpy()
        mean = (weights * nodes).sum(-1).numpy()
        return {"negative_mass": bootstrap_interval(negative, seed=seed, num_resamples=num_resamples),
                "mean": bootstrap_interval(mean, seed=seed, num_resamples=num_resamples)}

    def _sigma(self, sigma: float | None) -> float:
        if sigma is None:
            spread = float(self.nodes.max() - self.nodes.min())
            sigma = max(0.01 * spread, 1e-6)
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        return float(sigma)

    def moments(self) -> tuple[float, float]:
        """Mean and variance of the (unsmoothed) quadrature measure: estimates of tr(H)/P and
        tr(H²)/P − (tr(H)/P)²."""
        mean = float((self.weights * self.nodes).sum(-1).mean())
        second = float((self.weights * self.nodes ** 2).sum(-1).mean())
        return mean, second - mean ** 2

    def plot(self, ax=None, *, label: str | None = None, **kwargs):
        """The smoothed density with its band over probes (`fastvit_analysis.plot.curvature.density`)
        -> (figure, ax)."""
        from ..plot.curvature import density

        fig = density({label: self} if label else self, ax=ax, **kwargs)
        return fig, ax if ax is not None else fig.axes[0]


@renamed_kwargs(probes_per_pass="per_pass")
def hessian_density(model: nn.Module, loss_fn: LossFn, data: Any, *, num_probes: int = 10,
                    steps: int = 90, weight_decay: float = 0.0, params: Sequence[str] | str | None = None,
                    seed: int = 0, per_pass: int | None = None, memory_budget_gib: float = 2.0,
                    hvp_mode: str | None = None, loss_reduction: str | None = None,
                    distributed: bool | None = None, operator: CurvatureOperator | None = None,
                    output_fn: OutputFn | None = None, progress: bool = True) -> HessianDensityResult:
    """Eigenvalue density of the Hessian of the mean loss over `data` by SLQ.

    Args:
        output_fn: model output -> logits for dict/tuple/ModelOutput models the default rule
            (common/outputs.py: a tensor, .logits, ["logits"], the first element) does not cover.
        num_probes: Rademacher probes; steps: Lanczos steps per probe (capped at the number of params).
        per_pass: probes whose Lanczos runs share one batched HVP pass (default: as many as fit
            a Krylov buffer of `memory_budget_gib`).
        loss_reduction, distributed: see HessianOperator. operator: a ready curvature operator (GGN,
            empirical Fisher) instead of the Hessian; model/loss_fn/data are then ignored.

    Returns: HessianDensityResult with nodes/weights [num_probes, steps]; `.density(grid, sigma)`.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model, batch = nn.Linear(4, 3), (torch.randn(32, 4), torch.randint(0, 3, (32,)))
        >>> res = hessian_density(model, nn.CrossEntropyLoss(), batch, num_probes=2, steps=8, progress=False)
        >>> res.nodes.shape, [round(float(w), 6) for w in res.weights.sum(dim=1)]
        (torch.Size([2, 8]), [1.0, 1.0])
        >>> fig = res.plot()
    """
    if not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    H = operator if operator is not None else HessianOperator(
        model, loss_fn, data, weight_decay=weight_decay, params=params, hvp_mode=hvp_mode,
        loss_reduction=loss_reduction, distributed=distributed, output_fn=output_fn)
    P = H.num_params
    steps = min(steps, P)
    if per_pass is None:
        per_probe = (steps + 1) * P * torch.finfo(H.dtype).bits // 8
        per_pass = max(1, min(num_probes, int(memory_budget_gib * 2 ** 30 // per_probe)))
    gen = make_generator(seed, H.device)
    nodes, weights = [], []
    for start in range(0, num_probes, per_pass):
        b = min(per_pass, num_probes - start)
        v0 = rademacher((b, P), dtype=H.dtype, device=H.device, generator=gen)
        T = lanczos_tridiagonal(H, v0, steps, generator=gen, progress=progress,
                                desc=f"slq probes {start + 1}-{start + b}/{num_probes}")
        theta, S = torch.linalg.eigh(T)
        nodes.append(theta.cpu())
        weights.append((S[:, 0, :] ** 2).cpu())
    return HessianDensityResult(nodes=torch.cat(nodes), weights=torch.cat(weights), num_hvp=H.num_hvp, num_params=P)


# the name before issue 16's vocabulary, kept one release: importing it warns
__getattr__ = module_aliases({"HessianDensity": HessianDensityResult}, __name__)

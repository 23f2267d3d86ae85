"""Trace of the Hessian by Hutchinson or Hutch++ with Rademacher probes.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fastvit_analysis import hessian_trace
    >>> model = nn.Sequential(nn.Linear(4, 3)).double()
    >>> data = (torch.randn(16, 4, dtype=torch.float64), torch.randint(3, (16,)))
    >>> res = hessian_trace(model, nn.CrossEntropyLoss(), data, num_probes=30, progress=False)
    >>> res.stderr >= 0
    True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from torch import nn

from ..common.deprecation import module_aliases, renamed_fields, renamed_kwargs
from ..common.intervals import Estimate, normal_interval
from ..common.outputs import OutputFn
from ..common.results import Result
from .hutchpp import hutch_plus_plus, hutchinson
from .krylov import make_generator
from .operator import CurvatureOperator, HessianOperator, LossFn

METHODS = ("hutch++", "hutchinson")


@renamed_fields(n_hvp="num_hvp")
@dataclass
class HessianTraceResult(Result):
    """Estimated trace `value` with its standard error `stderr` (of the random part), `num_hvp` used."""

    value: float
    stderr: float
    num_hvp: int
    num_probes: int
    method: str
    num_params: int

    def plot(self, **kwargs):
        """The trace as a bar with its 95% interval (`fastvit_analysis.plot.curvature.trace`) -> Figure."""
        from ..plot.curvature import trace

        return trace(self, **kwargs)

    def summary(self) -> dict[str, Estimate]:
        """{"trace": value ± 1.96·stderr}, a normal interval with n = num_probes (docs/methods.md §5).

        Example:
            >>> HessianTraceResult(10.0, 1.0, 30, 30, "hutchinson", 100).summary()["trace"].ci95
            (8.040036015459947, 11.959963984540053)
        """
        return {"trace": normal_interval(self.value, self.stderr, self.num_probes)}


@renamed_kwargs(chunk_size="per_pass")
def hessian_trace(model: nn.Module, loss_fn: LossFn, data: Any, *, num_probes: int = 100,
                  method: str = "hutch++", weight_decay: float = 0.0,
                  params: Sequence[str] | str | None = None, seed: int = 0, per_pass: int = 8,
                  hvp_mode: str | None = None, loss_reduction: str | None = None,
                  distributed: bool | None = None, operator: CurvatureOperator | None = None,
                  output_fn: OutputFn | None = None, progress: bool = True) -> HessianTraceResult:
    """tr(H) of the mean loss over `data`, from `num_probes` Hessian-vector products.

    method: "hutch++" (low-rank part exact + Hutchinson on the rest; lower variance) or "hutchinson".
    per_pass: vectors per batched HVP pass (memory: per_pass × model activations).
    loss_reduction, distributed: see HessianOperator. operator: a ready curvature operator (GGN,
    empirical Fisher) instead of the Hessian; model/loss_fn/data are then ignored.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model, batch = nn.Linear(4, 3), (torch.randn(32, 4), torch.randint(0, 3, (32,)))
        >>> res = hessian_trace(model, nn.CrossEntropyLoss(), batch, num_probes=30, progress=False)
        >>> exact = float(HessianOperator(model, nn.CrossEntropyLoss(), batch).matmat(torch.eye(15)).trace())
        >>> res.num_probes, abs(res.value - exact) < 1e-5 * exact  # rank 10 <= the 10-vector sketch: exact
        (30, True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(num_probes, int) or num_probes < (3 if method == "hutch++" else 2):
        raise ValueError(f"num_probes must be an int >= {3 if method == 'hutch++' else 2} for {method}, "
                         f"got {num_probes!r}")
    if per_pass < 1:
        raise ValueError(f"per_pass must be >= 1, got {per_pass}")
    H = operator if operator is not None else HessianOperator(
        model, loss_fn, data, weight_decay=weight_decay, params=params, hvp_mode=hvp_mode,
        loss_reduction=loss_reduction, distributed=distributed, output_fn=output_fn)
    gen = make_generator(seed, H.device)
    estimator = hutch_plus_plus if method == "hutch++" else hutchinson
    value, stderr, _ = estimator(H, num_probes, generator=gen, chunk=per_pass, progress=progress)
    return HessianTraceResult(value=value, stderr=stderr, num_hvp=H.num_hvp, num_probes=num_probes, method=method,
                        num_params=H.num_params)


# the name before issue 16's vocabulary, kept one release: importing it warns
__getattr__ = module_aliases({"HessianTrace": HessianTraceResult}, __name__)

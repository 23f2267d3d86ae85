"""Per-block curvature: top-k eigenvalues and trace of each block's (diagonal) Hessian block, one figure.

The Hessian block of block B is d²L/dθ_B² with every other parameter held fixed: the diagonal block
of the full Hessian (`params=` of HessianOperator). blocks="auto" takes the model's top-level children
that hold trainable parameters and expands a ModuleList/Sequential of several such children (timm's
`blocks`, a ResNet's stages as `layer1`..`layer4` stay whole) into its members.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fastvit_analysis import block_spectra
    >>> model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    >>> data = (torch.randn(32, 4, dtype=torch.float64), torch.randint(3, (32,)))
    >>> res = block_spectra(model, nn.CrossEntropyLoss(), data, top_k=2, num_probes=9, progress=False)
    >>> res.blocks, tuple(res.eigenvalues.shape)
    (['0', '2'], (2, 2))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..common.deprecation import module_aliases, renamed_fields
from ..common.intervals import Estimate
from ..common.results import Result
from .operator import HessianOperator, LossFn, select_parameters
from .spectrum import hessian_spectrum
from .trace import hessian_trace


def _has_trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def auto_blocks(model: nn.Module) -> dict[str, list[str]]:
    """label -> [module prefix]: top-level children with trainable parameters, a ModuleList/Sequential
    of >= 2 such children expanded one level (e.g. timm ViT: patch_embed, blocks.0 … blocks.11, norm, head)."""
    blocks: dict[str, list[str]] = {}
    for name, child in model.named_children():
        if not _has_trainable(child):
            continue
        members = [(n, c) for n, c in child.named_children() if _has_trainable(c)]
        if isinstance(child, (nn.ModuleList, nn.Sequential)) and len(members) >= 2 and model is not child:
            for n, _ in members:
                blocks[f"{name}.{n}"] = [f"{name}.{n}"]
        else:
            blocks[name] = [name]
    if not blocks:
        raise ValueError("blocks='auto': the model has no child module with trainable parameters; pass blocks=")
    return blocks


def _resolve_blocks(model: nn.Module, blocks: Any) -> dict[str, list[str]]:
    if blocks == "auto":
        return auto_blocks(model)
    if isinstance(blocks, Mapping):
        resolved = {str(k): ([v] if isinstance(v, str) else list(v)) for k, v in blocks.items()}
    elif isinstance(blocks, Sequence) and not isinstance(blocks, str):
        resolved = {str(b): [str(b)] for b in blocks}
    else:
        raise TypeError(f"blocks must be 'auto', a list of module prefixes or a dict label -> prefixes, got {blocks!r}")
    if not resolved:
        raise ValueError("blocks is empty: name at least one block")
    for prefixes in resolved.values():
        select_parameters(model, prefixes)   # ValueError naming an unknown or untrainable block
    return resolved


@renamed_fields(n_hvp="num_hvp")
@dataclass
class BlockSpectraResult(Result):
    """Per block (rows, in `blocks` order): eigenvalues/residuals/converged [n_blocks, top_k], trace and
    its standard error [n_blocks] (Hutch++), num_params per block, num_hvp over all blocks."""

    blocks: list[str]
    eigenvalues: Tensor
    residuals: Tensor
    converged: Tensor
    trace: Tensor
    trace_stderr: Tensor
    num_params: list[int]
    which: str
    top_k: int
    num_probes: int
    num_hvp: int
    prefixes: dict[str, list[str]] = field(default_factory=dict)

    def trace_estimates(self) -> list[Estimate]:
        """Each block's trace with its normal 95% interval (Hutch++ standard error), n = probes."""
        return [Estimate(float(t), (float(t - 1.96 * s), float(t + 1.96 * s)), self.num_probes)
                for t, s in zip(self.trace, self.trace_stderr)]

    def summary(self) -> dict[str, Estimate]:
        """Per block: "<block>/eigenvalue_0" (the top eigenvalue with the certified residual bound
        [λ − r, λ + r] of `HessianSpectrumResult.summary`, n = all HVPs) and "<block>/trace" (Hutch++, normal
        95% interval, n = probes; absent with num_probes=0).

        Example:
            >>> r = BlockSpectraResult(["a"], torch.tensor([[2.0]]), torch.tensor([[0.5]]), torch.tensor([[True]]),
            ...                  torch.tensor([5.0]), torch.tensor([1.0]), [3], "LM", 1, 9, 40)
            >>> r.summary()["a/eigenvalue_0"]
            Estimate(value=2.0, ci95=(1.5, 2.5), n=40)
        """
        out: dict[str, Estimate] = {}
        traces = self.trace_estimates()
        for r, block in enumerate(self.blocks):
            v, res = float(self.eigenvalues[r, 0]), float(self.residuals[r, 0])
            out[f"{block}/eigenvalue_0"] = Estimate(v, (v - res, v + res), int(self.num_hvp))
            if self.num_probes:
                out[f"{block}/trace"] = traces[r]
        return out

    def summary_dict(self) -> dict[str, Any]:
        top = self.eigenvalues[:, 0]
        i = int(top.abs().argmax())
        return {"blocks": len(self.blocks), "sharpest block": self.blocks[i], "its top eigenvalue": float(top[i]),
                "HVPs": self.num_hvp, "per block": {b: {"eigenvalues": self.eigenvalues[r].tolist(),
                                                      "trace": self.trace_estimates()[r].to_dict()}
                                                  for r, b in enumerate(self.blocks)}}

    def plot_dict(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "eigenvalues": self.eigenvalues.tolist(), "trace": self.trace.tolist(),
                "trace_stderr": self.trace_stderr.tolist()}

    def plot(self, ax=None):
        """One figure: top-k eigenvalues per block (markers) and the trace with its 95% interval
        (`fastvit_analysis.plot.curvature.blocks`)."""
        from ..plot.curvature import blocks

        return blocks(self, ax=ax)


def block_spectra(model: nn.Module, loss_fn: LossFn, data: Any, *, blocks: Any = "auto", top_k: int = 3,
                  which: str = "LM", tol: float = 1e-3, max_hvp: int | None = None, num_probes: int = 30,
                  weight_decay: float = 0.0, seed: int = 0, hvp_mode: str | None = None,
                  loss_reduction: str | None = None, distributed: bool | None = None,
                  progress: bool = True) -> BlockSpectraResult:
    """Top-k eigenvalues (Lanczos, with residuals) and trace (Hutch++) of each block's Hessian.

    Args:
        blocks: "auto" (see auto_blocks), a list of module prefixes, or a dict label -> prefix(es).
        top_k, which, tol, max_hvp: per block, as hessian_spectrum (a block smaller than top_k + 1
            parameters gets top_k = its size - 1, the rest NaN and not converged).
        num_probes: Hutch++ probes per block for the trace (0: no trace, NaN).
        Other arguments as HessianOperator.

    Returns: BlockSpectraResult (rows follow `blocks`).
    """
    if not isinstance(num_probes, int) or isinstance(num_probes, bool) or (num_probes != 0 and num_probes < 3):
        raise ValueError(f"num_probes must be 0 (no trace) or an int >= 3, got {num_probes!r}")
    resolved = _resolve_blocks(model, blocks)
    rows = len(resolved)
    values = torch.full((rows, top_k), math.nan, dtype=torch.float64)
    residuals = torch.full((rows, top_k), math.nan, dtype=torch.float64)
    converged = torch.zeros(rows, top_k, dtype=torch.bool)
    traces = torch.full((rows,), math.nan, dtype=torch.float64)
    stderrs = torch.full((rows,), math.nan, dtype=torch.float64)
    sizes, num_hvp = [], 0
    for r, prefixes in enumerate(resolved.values()):
        H = HessianOperator(model, loss_fn, data, weight_decay=weight_decay, params=prefixes, hvp_mode=hvp_mode,
                            loss_reduction=loss_reduction, distributed=distributed)
        sizes.append(H.num_params)
        k = min(top_k, H.num_params - 1)
        if k >= 1:
            spec = hessian_spectrum(None, None, None, operator=H, top_k=k, which=which, tol=tol,
                                    max_hvp=max_hvp, seed=seed, progress=progress)
            values[r, :k], residuals[r, :k], converged[r, :k] = spec.eigenvalues, spec.residuals, spec.converged
        if num_probes:
            tr = hessian_trace(None, None, None, operator=H, num_probes=num_probes, seed=seed, progress=progress)
            traces[r], stderrs[r] = tr.value, tr.stderr
        num_hvp += H.num_hvp
    return BlockSpectraResult(blocks=list(resolved), eigenvalues=values, residuals=residuals, converged=converged,
                        trace=traces, trace_stderr=stderrs, num_params=sizes, which=which, top_k=top_k,
                        num_probes=num_probes, num_hvp=num_hvp, prefixes=resolved)


# the name before issue 16's vocabulary, kept one release: importing it warns
__getattr__ = module_aliases({"BlockSpectra": BlockSpectraResult}, __name__)

"""Max-eigenvalue spectrum [paper, Fig. 1c/4]: top-k eigenvalues of each mini-batch's Hessian, pooled.

Mini-batches are solved many at a time: one vmapped HVP pass applies the unfinished mini-batch
Hessians of a chunk to one vector each, and a batched thick-restart Krylov-Rayleigh-Ritz solver
(curvature.warm.residual_eigsh) keeps one basis Q and its products W = H Q per mini-batch, so each
residual ‖H y − θ y‖ is explicit at no extra product, and a mini-batch is locked (no longer
multiplied) as soon as its own top-k pairs pass. Chunks of mini-batches run through
`fastvit_analysis.sweep.run_sweep`, so a long run writes each finished chunk to `out`, resumes after
an interruption and shards over torchrun ranks.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fastvit_analysis import max_eigenvalue_spectrum
    >>> model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    >>> data = (torch.randn(64, 4, dtype=torch.float64), torch.randint(3, (64,)))
    >>> res = max_eigenvalue_spectrum(model, nn.CrossEntropyLoss(), data, batch_size=16, top_k=2,
    ...                               progress=False)
    >>> tuple(res.eigenvalues.shape)
    (4, 2)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..common.batches import iter_batches
from ..common.deprecation import module_aliases, renamed_fields, renamed_kwargs
from ..common.fingerprint import fingerprint, hash_tensors
from ..common.intervals import Estimate, bootstrap_indices, bootstrap_interval
from ..common.outputs import OutputFn, check_output_fn
from ..common.results import Result, nan_for_none
from ..sweep import run_sweep
from .krylov import gaussian, make_generator, norms
from .lanczos import check_top_k, check_which, order_by
from .operator import LossFn, MiniBatchHessians, select_parameters
from .warm import residual_eigsh

SUMMARY_QUANTILES = (0.05, 0.5, 0.95)


@renamed_fields(n_hvp="num_hvp")
@dataclass
class MaxEigenvalueSpectrumResult(Result):
    """Per-mini-batch top-k eigenvalues [num_batches, top_k] (signed, ordered best-first for `which`).

    negative_fraction: fraction of all pooled values < 0. positive_mean: mean of the values > 0
    (nan when none). residuals [num_batches, top_k]: explicit ‖H_b v − λ v‖.
    `summary()` gives these and pooled quantiles with 95% intervals from a bootstrap over
    MINI-BATCHES (a resample draws whole rows of `eigenvalues`, not single values: the k values of
    one mini-batch's Hessian are not independent).
    """

    eigenvalues: Tensor
    residuals: Tensor
    converged: Tensor
    negative_fraction: float
    positive_mean: float
    batch_size: int
    which: str
    num_hvp: int

    @property
    def num_samples(self) -> int:
        """Samples the spectrum rests on: batch_size x the number of mini-batches."""
        return int(self.batch_size) * int(self.eigenvalues.shape[0])

    @property
    def values(self) -> Tensor:
        """All pooled eigenvalues, flat."""
        return self.eigenvalues.reshape(-1)

    def per_batch_totals(self) -> np.ndarray:
        """Per mini-batch [#values < 0, #finite values, Σ values > 0, #values > 0] -> (num_batches, 4):
        the negative fraction is t0/t1 and the positive mean t2/t3 of their (resampled) totals."""
        values = self.eigenvalues.double().numpy()
        return np.stack([(values < 0).sum(1), np.isfinite(values).sum(1),
                         np.where(values > 0, values, 0.0).sum(1), (values > 0).sum(1)],
                        axis=1).astype(np.float64)

    def summary(self, *, quantiles: Sequence[float] = SUMMARY_QUANTILES, seed: int = 0,
                num_resamples: int = 1000) -> dict[str, Estimate]:
        """{"negative_fraction", "positive_mean", "quantile_<q>"...}: Estimates with n = mini-batches.

        Intervals: percentile bootstrap over mini-batches (`bootstrap_interval`, fixed `seed`); the
        fractions and the positive mean are ratios of pooled totals over the resampled mini-batches.

        Example:
            >>> r = MaxEigenvalueSpectrumResult(torch.tensor([[2.0, -1.0], [3.0, 1.0]]), torch.zeros(2, 2),
            ...                           torch.ones(2, 2, dtype=torch.bool), 0.25, 2.0, 16, "LM", 10)
            >>> s = r.summary()
            >>> s["negative_fraction"].value, s["positive_mean"].value, s["positive_mean"].n
            (0.25, 2.0, 2)
        """
        values = self.eigenvalues.double().numpy()                  # [mini-batches, k]
        totals = self.per_batch_totals()
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {"negative_fraction": bootstrap_interval(totals, lambda t: t[:, 0] / t[:, 1], pooled=True,
                                                           seed=seed, num_resamples=num_resamples),
                   "positive_mean": bootstrap_interval(totals, lambda t: t[:, 2] / t[:, 3], pooled=True,
                                                       seed=seed, num_resamples=num_resamples)}
        if quantiles:
            # the resamples of bootstrap_interval (same indices), vectorised: [R, mini-batches·k] at once
            idx = bootstrap_indices(values.shape[0], num_resamples, seed)
            pooled = values[idx].reshape(num_resamples, -1)
            for q in quantiles:
                point = float(np.nanquantile(values, q))
                if values.shape[0] < 2:
                    out[f"quantile_{q:g}"] = Estimate(point, (float("nan"), float("nan")), values.shape[0])
                    continue
                # np.nanquantile loops over rows in Python; np.quantile is vectorised (no NaN: the usual case)
                reps = (np.quantile(pooled, q, axis=1) if np.isfinite(values).all()
                        else np.nanquantile(pooled, q, axis=1))
                lo, hi = np.quantile(reps, [0.025, 0.975])
                out[f"quantile_{q:g}"] = Estimate(point, (float(lo), float(hi)), values.shape[0])
        return out

    def plot(self, axes=None, *, label: str | None = None, **kwargs):
        """The paper's two-panel density (negative and positive ranges) and, without `axes`, the summary
        panels (`fastvit_analysis.plot.curvature.max_eigen`) -> (figure, (ax_negative, ax_positive))."""
        from ..plot.curvature import max_eigen

        if kwargs.pop("color", None) is not None:
            import warnings

            warnings.warn("MaxEigenvalueSpectrumResult.plot: color= is deprecated and ignored (models take the shared "
                          "colours of fastvit_analysis.plot.style)", DeprecationWarning, stacklevel=2)
        if axes is not None:
            kwargs.setdefault("summary", len(axes) == 4)
        fig = max_eigen({label: self} if label else self, ax=axes, **kwargs)
        return fig, (fig.axes[0], fig.axes[1]) if axes is None else (axes[0], axes[1])


def _mini_batches(data: Any, batch_size: int, num_batches: int | None) -> tuple[Tensor, Tensor]:
    """Re-split `data` into [n, batch_size, ...] inputs and targets (an incomplete last one is dropped)."""
    xs, ys, have = [], [], 0
    need = None if num_batches is None else num_batches * batch_size
    for x, y in iter_batches(data, name="data"):
        xs.append(x)
        ys.append(y)
        have += x.shape[0]
        if need is not None and have >= need:
            break
    x, y = torch.cat(xs), torch.cat(ys)
    n = x.shape[0] // batch_size
    if num_batches is not None:
        n = min(n, num_batches)
    if n == 0:
        raise ValueError(f"data holds {x.shape[0]} samples, fewer than one mini-batch of batch_size={batch_size}")
    x = x[:n * batch_size].reshape(n, batch_size, *x.shape[1:])
    y = y[:n * batch_size].reshape(n, batch_size, *y.shape[1:])
    return x, y


def _warm_start_vector(previous: Tensor, v0: Tensor) -> Tensor:
    """One start vector per problem: the sum of a previous problem's unit Ritz vectors [b', k, P]
    (row i takes problem i mod b'), normalised, plus the problem's own unit random vector v0 [b, P]
    (so no direction is missed). A block of the Ritz vectors as start measured worse (see bench)."""
    rows = torch.arange(v0.shape[0], device=v0.device) % previous.shape[0]
    s = previous[rows].sum(dim=1)
    return s / norms(s).clamp_min(torch.finfo(s.dtype).tiny).unsqueeze(-1) + v0 / norms(v0).unsqueeze(-1)


@renamed_kwargs(batches_per_pass="per_pass")
def max_eigenvalue_spectrum(model: nn.Module, loss_fn: LossFn, data: Any, *, batch_size: int = 16,
                            num_batches: int | None = None, top_k: int = 5, which: str = "LM",
                            transform: Callable[[Tensor], Tensor] | None = None, tol: float = 1e-3,
                            max_hvp: int = 300, max_basis: int | None = None, weight_decay: float = 0.0,
                            params: Sequence[str] | str | None = None, seed: int = 0,
                            per_pass: int = 8, out: str | os.PathLike | None = None,
                            resume: bool = True, hvp_mode: str | None = None,
                            output_fn: OutputFn | None = None, warm_start: bool = False,
                            progress: bool = True) -> MaxEigenvalueSpectrumResult:
    """Top-k Hessian eigenvalues of every mini-batch of `batch_size` samples of `data`.

    Args:
        data: one (inputs, targets) batch or an iterable of batches; re-split into mini-batches of
            `batch_size` (the first `num_batches` of them, or all complete ones).
        which: "LM" (largest magnitude, signed, as the paper), "LA" or "SA".
        transform: applied to each mini-batch's inputs [batch_size, ...] (a training augmentation);
            seeded per mini-batch (seed, index), so results are reproducible and resumable.
        tol, max_hvp: per mini-batch convergence (residual <= tol·|λ|max) and product budget.
        hvp_mode: as hessian_spectrum's; None (the default everywhere) is "forward-over-reverse" here
            (the mini-batches are vmapped, which double backward cannot do).
        per_pass: mini-batches solved together (vmap); memory grows with it.
        out, resume: write finished chunks to `out` and skip them on a re-run (see run_sweep). The
            folder records a fingerprint of the weights, the mini-batches and every setting; a re-run
            with any of them changed is refused (StaleResultsError naming it) unless resume=False.
        output_fn: model output -> logits when the default rule (a tensor, `.logits`, `["logits"]`,
            the first element) does not fit the model.
        warm_start: start each mini-batch of a chunk from the sum of the Ritz vectors of the previous
            chunk (row i takes the previous chunk's mini-batch i mod its size) plus its own seeded
            random vector; False: from the random vector alone. Both stop at the same explicit
            criterion, residual <= tol·|λ|max, so the eigenvalues agree to tol. Default False: on
            trained demo models warm starts saved 3-5% of the products (per mini-batch: demo_resnet 20.0
            vs 20.6, demo_vit 21.0 vs 22.1) while making results depend on the order chunks are solved in (resume,
            ranks: digits beyond tol may differ); a block of the previous Ritz vectors as start
            cost 45% more products (bench/bench_curvature.py::test_max_eigen_hvps_per_mini_batch).

    `num_hvp` of the result counts every product made (a locked mini-batch costs nothing more).

    Returns: MaxEigenvalueSpectrumResult with eigenvalues [num_batches, top_k], negative_fraction, positive_mean.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model, batch = nn.Linear(4, 3), (torch.randn(32, 4), torch.randint(0, 3, (32,)))
        >>> res = max_eigenvalue_spectrum(model, nn.CrossEntropyLoss(), batch, batch_size=8, top_k=2, progress=False)
        >>> res.eigenvalues.shape, res.negative_fraction  # 4 mini-batches of 8; a convex loss: no negative one
        (torch.Size([4, 2]), 0.0)
        >>> fig = res.plot()
    """
    check_which(which)
    hvp_mode = hvp_mode or "forward-over-reverse"  # the recorded setting stays what it was before None
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")
    if not isinstance(per_pass, int) or per_pass < 1:
        raise ValueError(f"per_pass must be a positive int, got {per_pass!r}")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable on a batch of inputs, got {type(transform).__name__}")
    check_output_fn(output_fn)
    named = select_parameters(model, params)
    P = sum(p.numel() for _, p in named)
    check_top_k(top_k, P, max_hvp)
    inputs, targets = _mini_batches(data, batch_size, num_batches)
    n = inputs.shape[0]
    device, dtype = named[0][1].device, named[0][1].dtype

    def evaluate(indices: list[int]) -> list[dict[str, Any]]:
        try:
            return solve(indices)
        except torch.OutOfMemoryError:
            if len(indices) == 1:
                raise
            # Bound memory by halving the chunk (the Krylov buffer and the vmapped activations scale
            # with the number of mini-batches solved together).
            if device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(indices) // 2
            return evaluate(indices[:half]) + evaluate(indices[half:])

    previous: list[Tensor] = []   # Ritz vectors [b, k, P] of the last chunk solved here (warm starts)

    def solve(indices: list[int]) -> list[dict[str, Any]]:
        xs = []
        for i in indices:
            x = inputs[i]
            if transform is not None:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(seed * 1_000_003 + i)
                    x = transform(x)
            xs.append(x)
        H = MiniBatchHessians(model, loss_fn, torch.stack(xs), targets[indices], weight_decay=weight_decay,
                              params=params, first_index=indices[0], hvp_mode=hvp_mode,
                              output_fn=output_fn)
        v0 = torch.stack([gaussian((P,), dtype=dtype, device=device,
                                   generator=make_generator(seed * 1_000_003 + i, device)) for i in indices])
        gen = make_generator(seed * 1_000_003 + indices[0] + 7, device)
        if warm_start and previous:
            v0 = _warm_start_vector(previous[0], v0)
        res = residual_eigsh(H, v0.unsqueeze(1), top_k, which=which, tol=tol, max_basis=max_basis,
                             max_steps=max_hvp, generator=gen)
        values, vectors = res.eigenvalues, res.eigenvectors            # [b, k], [b, k, P]
        residuals = res.residual_estimates.cpu()                       # explicit: ‖W s − θ Q s‖, W = H Q
        if warm_start:
            previous[:] = [vectors.detach()]
        order = order_by(values, which)
        values = torch.gather(values, 1, order)
        residuals = torch.gather(residuals, 1, order.cpu())
        return [{"eigenvalues": values[r].cpu(), "residuals": residuals[r].cpu(),
                 "n_hvp": int(res.steps_per_problem[r])} for r in range(len(indices))]

    meta = {"analysis": "max_eigenvalue_spectrum"}
    print_ = None
    if out is not None:
        print_ = fingerprint(
            "max_eigenvalue_spectrum/3", model=model, data_hash=hash_tensors({"inputs": inputs, "targets": targets}),
            settings={"batch_size": batch_size, "num_batches": n, "top_k": top_k, "which": which, "tol": tol,
                      "max_hvp": max_hvp, "max_basis": max_basis, "seed": seed, "num_params": P,
                      "params": [name for name, _ in named], "weight_decay": weight_decay,
                      "transform": transform, "hvp_mode": hvp_mode, "loss_fn": loss_fn,
                      "loss_reduction": getattr(loss_fn, "reduction", None), "output_fn": output_fn,
                      "warm_start": warm_start})
    results = run_sweep(evaluate, list(range(n)), out=out, resume=resume, meta=meta, fingerprint=print_,
                        per_pass=per_pass, desc="max_eigenvalue_spectrum", progress=progress)
    values = torch.tensor([nan_for_none(r["eigenvalues"]) for r in results], dtype=torch.float64)
    residuals = torch.tensor([nan_for_none(r["residuals"]) for r in results], dtype=torch.float64)
    scale = values.abs().amax(dim=1, keepdim=True)
    positive = values[values > 0]
    return MaxEigenvalueSpectrumResult(
        eigenvalues=values, residuals=residuals, converged=residuals <= tol * scale,
        negative_fraction=float((values < 0).double().mean()),
        positive_mean=float(positive.mean()) if positive.numel() else float("nan"),
        batch_size=batch_size, which=which, num_hvp=int(sum(r["n_hvp"] for r in results)))


# the name before issue 16's vocabulary, kept one release: importing it warns
__getattr__ = module_aliases({"MaxEigenvalueSpectrum": MaxEigenvalueSpectrumResult}, __name__)

"""Loss landscape on a 1-D line or 2-D plane through the parameters (docs/methods.md §2).

    L(a, b) = loss over the whole data at θ* + a·d1 + b·d2     (model in eval mode)

Several grid points are evaluated in one forward pass: their parameter sets are stacked along a new
leading dim and the model runs under ``torch.func.vmap(functional_call)`` with the buffers shared.
The model object itself is never modified or copied: parameters stay bitwise identical, and the
train/eval flag of every submodule is restored afterwards. Points go through
:func:`fastvit_analysis.run_sweep`, so with ``out=`` every finished chunk is written at once, a re-run
resumes, and under torchrun each rank evaluates a disjoint share.

Scaling out (every rank runs the same script; rank 0 shows the progress bar)::

    # torchrun --nproc_per_node 2 landscape.py      (gloo on CPU, NCCL on GPU)
    import torch.distributed as dist
    dist.init_process_group("gloo")
    res = loss_landscape(model, nn.CrossEntropyLoss(), loader, steps=21, l2_coef=0.05, out="runs/vit")
    if dist.get_rank() == 0:
        res.save_json("runs/vit/landscape.json")

Killed? Run the same command again: the points already in ``runs/vit`` are not recomputed.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..common.batches import materialize_batches, model_device
from ..common.deprecation import renamed_fields, renamed_kwargs
from ..common.fingerprint import fingerprint, hash_tensors
from ..common.intervals import ArrayEstimate, Estimate, bootstrap_interval, wilson_interval
from ..common.modes import eval_mode
from ..common.outputs import OutputFn, check_output_fn, model_logits
from ..common.reduction import batch_weights, loss_reduction_of
from ..common.results import Result, nan_for_none
from ..common.types import LossFn
from ..features.fourier import MIN_BATCHES
from ..sweep import run_sweep
from .directions import Direction, filter_normalized_directions

__all__ = ["loss_landscape", "LandscapeResult", "evaluate_points"]

Span = tuple[float, float]


@renamed_fields(n_samples="num_samples")
@dataclass
class LandscapeResult(Result):
    """A 1-D or 2-D loss landscape.

    ``loss[i, j]`` (2-D) or ``loss[i]`` (1-D) is the value at ``θ* + coordinates[0][i]·d1
    + coordinates[1][j]·d2``. ``loss = nll + l2_coef·l2_norm`` where ``nll`` is the data loss
    (sample-weighted mean of ``loss_fn`` over the batches) and ``l2_norm`` is Σ_p ‖p‖₂ over all
    parameters at that point (sum of per-tensor L2 norms, not squared). ``accuracy`` is the top-1
    accuracy in percent (0-100, as every analysis reports it), NaN when the outputs are not (B, C)
    logits with integer targets.

    Per data batch (for intervals that resample batches, docs/methods.md §5): ``batch_loss_sum[..., b]`` is the
    sum of ``loss_fn`` over batch b's samples at each point (batch mean × its size), ``batch_correct[..., b]``
    its correct count, ``batch_sizes[b]`` its size; shapes ``loss.shape + (num_batches,)``. None when
    the result was resumed from a sweep folder written before these were recorded.
    """

    coordinates: list[np.ndarray]
    loss: np.ndarray
    nll: np.ndarray
    accuracy: np.ndarray
    l2_norm: np.ndarray
    l2_coef: float = 0.0
    num_samples: int = 0
    directions: list[Direction] | None = field(default=None, repr=False, metadata={"serialize": False})
    batch_loss_sum: np.ndarray | None = None
    batch_correct: np.ndarray | None = None
    batch_sizes: list[int] | None = None

    @property
    def dims(self) -> int:
        return len(self.coordinates)

    @property
    def relative_loss(self) -> np.ndarray:
        """``loss - min(loss)`` (what the paper plots)."""
        return self.loss - np.nanmin(self.loss)

    @property
    def centre_index(self) -> tuple[int, ...]:
        """Grid index of the point nearest the origin (θ* itself on the default odd grids)."""
        return tuple(int(np.argmin(np.abs(np.asarray(c)))) for c in self.coordinates)

    @property
    def border_mask(self) -> np.ndarray:
        """True on the grid's outer ring: first or last point of any axis (|a| = 1 or |b| = 1 on the
        default span (-1, 1)); the two ends of a 1-D line."""
        mask = np.zeros(np.shape(self.loss), dtype=bool)
        for axis, c in enumerate(self.coordinates):
            edge = [slice(None)] * mask.ndim
            for i in (0, len(c) - 1):
                edge[axis] = i
                mask[tuple(edge)] = True
        return mask

    def border_rise_units(self) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]] | None:
        """Per data batch b, the pieces of the C1 quantity (docs/methods.md §5) "mean loss on the border minus
        the loss at the centre", linear in the batches: rows [Σ_border-mean loss_b, Σ centre loss_b,
        n_b, n_b·l2_coef·(mean border ‖θ‖ − centre ‖θ‖)] -> (num_batches, 4), and the statistic of
        their totals (R, 4) -> (R,) that gives the rise. None without per-batch data.
        """
        if self.batch_loss_sum is None or self.batch_sizes is None:
            return None
        per_batch = np.asarray(self.batch_loss_sum, dtype=np.float64)
        mask, centre = self.border_mask, self.centre_index
        sizes = np.asarray(self.batch_sizes, dtype=np.float64)
        l2 = np.asarray(self.l2_norm, dtype=np.float64)
        l2_rise = float(self.l2_coef) * (float(l2[mask].mean()) - float(l2[centre])) if self.l2_coef else 0.0
        units = np.stack([per_batch[mask].mean(0), per_batch[centre], sizes, sizes * l2_rise], axis=1)
        return units, _rise_from_totals

    def loss_band(self, *, seed: int = 0, num_resamples: int = 1000) -> ArrayEstimate | None:
        """Pointwise 95% band of `loss` over the grid (shape loss.shape + (2,) in `.ci95`): bootstrap
        over data batches, n = batches (NaN with fewer than 8). None without per-batch data."""
        if self.batch_loss_sum is None or self.batch_sizes is None:
            return None
        shape = np.shape(self.loss)
        per_batch = np.asarray(self.batch_loss_sum, dtype=np.float64).reshape(-1, len(self.batch_sizes)).T
        sizes = np.asarray(self.batch_sizes, dtype=np.float64)[:, None]
        l2 = float(self.l2_coef) * np.asarray(self.l2_norm, dtype=np.float64).reshape(-1)
        P = per_batch.shape[1]
        band = bootstrap_interval(np.concatenate([per_batch, sizes], axis=1),
                                  lambda t: t[:, :P] / t[:, P:] + l2[None], pooled=True, seed=seed,
                                  num_resamples=num_resamples, min_units=MIN_BATCHES)
        return ArrayEstimate(np.asarray(band.value).reshape(shape), np.asarray(band.ci95).reshape(*shape, 2), band.n)

    def plot(self, **kwargs):
        """3-D surface (2-D) or curve with its band (1-D), loss − min clipped at 42
        (`fastvit_analysis.plot.landscape.landscape`) -> Figure."""
        from ..plot.landscape import landscape

        return landscape(self, **kwargs)

    def summary(self, *, seed: int = 0, num_resamples: int = 1000) -> dict[str, Estimate]:
        """{"border_rise", "centre_loss", "centre_accuracy"} with 95% intervals (docs/methods.md §5).

        border_rise: mean `loss` on the border (`border_mask`) minus `loss` at the centre, and
        centre_loss: percentile bootstrap over the DATA BATCHES (n = batches; NaN interval when the
        per-batch losses were not recorded or there are fewer than 8 batches, as for the features).
        centre_accuracy: Wilson, percent, n = samples (classification only).

        Example:
            >>> a = np.linspace(-1, 1, 3); z = np.add.outer(a ** 2, a ** 2)
            >>> per_batch = np.stack([z * 4, z * 4 + 2], axis=-1)           # two batches of 4 samples
            >>> r = LandscapeResult([a, a], z + 0.25, z + 0.25, np.full_like(z, np.nan), np.zeros_like(z),
            ...                     num_samples=8, batch_loss_sum=per_batch, batch_correct=None,
            ...                     batch_sizes=[4, 4])
            >>> r.summary()["border_rise"].value                            # border mean 1.5, centre 0
            1.5
        """
        loss = np.asarray(self.loss, dtype=np.float64)
        mask, centre = self.border_mask, self.centre_index
        nan = (float("nan"), float("nan"))
        out: dict[str, Estimate] = {}
        units = self.border_rise_units()
        if units is None:
            n = len(self.batch_sizes) if self.batch_sizes else 1
            out["border_rise"] = Estimate(float(loss[mask].mean() - loss[centre]), nan, n)
            out["centre_loss"] = Estimate(float(loss[centre]), nan, n)
        else:
            per_unit, statistic = units
            out["border_rise"] = bootstrap_interval(per_unit, statistic, pooled=True, seed=seed,
                                                    num_resamples=num_resamples, min_units=MIN_BATCHES)
            l2_centre = float(self.l2_coef) * float(np.asarray(self.l2_norm)[centre])
            out["centre_loss"] = bootstrap_interval(per_unit[:, 1:3], lambda t: t[:, 0] / t[:, 1] + l2_centre,
                                                    pooled=True, seed=seed, num_resamples=num_resamples,
                                                    min_units=MIN_BATCHES)
        correct = None
        if self.batch_correct is not None:
            correct = float(np.asarray(self.batch_correct, dtype=np.float64)[centre].sum())
        elif np.isfinite(np.asarray(self.accuracy, dtype=np.float64)[centre]) and self.num_samples:
            correct = float(np.asarray(self.accuracy)[centre]) / 100.0 * self.num_samples   # percent
        if correct is not None and math.isfinite(correct) and self.num_samples:
            out["centre_accuracy"] = wilson_interval(int(round(correct)), int(self.num_samples), scale=100.0)
        return out


def _rise_from_totals(t: np.ndarray) -> np.ndarray:
    """(R, 4) totals of `LandscapeResult.border_rise_units` -> (R,) border rise."""
    return (t[:, 0] - t[:, 1] + t[:, 3]) / t[:, 2]


def _is_classification(out: Any, y: Tensor) -> bool:
    return (isinstance(out, Tensor) and not y.is_floating_point() and not y.is_complex() and y.ndim == 1
            and out.ndim == 2 and out.shape[0] == y.shape[0])


class _PointEvaluator:
    """Evaluates loss/accuracy at points θ0 + Σ_k c_k·d_k, `len(points)` parameter sets per pass.

    `moving`: parameters with a non-zero direction (stacked per point); `fixed`: the other parameters
    and `buffers`, shared by all points."""

    def __init__(self, model: nn.Module, moving: dict[str, Tensor], fixed: dict[str, Tensor],
                 buffers: dict[str, Tensor], directions: list[Direction],
                 batches: list[tuple[Tensor, Tensor]], loss_fn: LossFn, output_fn: OutputFn | None = None,
                 loss_reduction: str | None = None):
        self.model, self.moving, self.fixed = model, moving, fixed
        self.output_fn = output_fn
        self.shared = {**{n: b for n, b in buffers.items() if n not in moving}, **fixed}
        self.param_names = {n for n, _ in model.named_parameters()}
        self.directions, self.batches, self.loss_fn = directions, batches, loss_fn
        self.num_samples = sum(int(x.shape[0]) for x, _ in batches)
        # the loss over all samples: batches weighted by size for a 'mean' loss, summed for a 'sum' loss
        self.loss_reduction = loss_reduction_of(loss_fn, loss_reduction)
        self.batch_weights = batch_weights([int(x.shape[0]) for x, _ in batches], self.loss_reduction)

    def _params(self, coords: Tensor) -> dict[str, Tensor]:
        """coords: (K, n_dirs) -> name -> (K, *shape) stacked parameter sets."""
        params = {}
        for name, theta in self.moving.items():
            c = coords.to(device=theta.device, dtype=theta.dtype)
            stacked = theta.unsqueeze(0).expand(c.shape[0], *theta.shape).clone()
            for k, direction in enumerate(self.directions):
                d = direction.get(name)
                if d is not None:
                    stacked.add_(c[:, k].view(-1, *([1] * theta.ndim)) * d.unsqueeze(0))
            params[name] = stacked
        return params

    def _single(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        out = model_logits(functional_call(self.model, (params, self.shared), (x,)), self.output_fn)
        loss = self.loss_fn(out, y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar tensor (the batch mean), got {shape}")
        if _is_classification(out, y):
            correct = (out.argmax(dim=-1) == y).sum().to(loss.dtype)
        else:
            correct = torch.full_like(loss, float("nan"))
        return loss.reshape(()), correct

    @torch.no_grad()
    def __call__(self, coords: Sequence[Sequence[float]]) -> list[dict[str, float]]:
        coords_t = torch.tensor(coords, dtype=torch.float64).reshape(len(coords), -1)
        params = self._params(coords_t)
        k = coords_t.shape[0]
        nll = torch.zeros(k, dtype=torch.float64)
        correct = torch.zeros(k, dtype=torch.float64)
        batch_loss, batch_correct = [], []   # per batch: Σ loss over its samples, correct count
        for w, (x, y) in zip(self.batch_weights, self.batches):
            if k == 1:
                loss, corr = self._single({n: p[0] for n, p in params.items()}, x, y)
                loss, corr = loss.unsqueeze(0), corr.unsqueeze(0)
            else:
                with warnings.catch_warnings():
                    # SDPA has no CPU batching rule yet: vmap loops over the points for that op only,
                    # which is still correct and no slower than point-by-point evaluation.
                    warnings.filterwarnings("ignore", message=".*not yet implemented the batching rule.*")
                    loss, corr = vmap(self._single, in_dims=(0, None, None))(params, x, y)
            # a 'mean' loss is the batch mean: times the batch size it is the batch's sum over samples
            per_sample_sum = x.shape[0] if self.loss_reduction == "mean" else 1
            batch_loss.append(loss.detach().double().cpu() * per_sample_sum)
            batch_correct.append(corr.detach().double().cpu())
            nll += loss.detach().double().cpu() * w
            correct += batch_correct[-1]
        l2 = torch.zeros(k, dtype=torch.float64)
        for name, p in params.items():
            if name in self.param_names:
                l2 += torch.linalg.vector_norm(p.reshape(k, -1).double(), dim=1).cpu()
        for name, t in self.fixed.items():
            if name in self.param_names:
                l2 += torch.linalg.vector_norm(t.double()).cpu()
        acc = correct / self.num_samples
        batch_loss_t, batch_correct_t = torch.stack(batch_loss, 1), torch.stack(batch_correct, 1)  # [k, batches]
        return [{"nll": float(nll[i]), "accuracy": float(acc[i]), "l2_norm": float(l2[i]),
                 "batch_loss_sum": batch_loss_t[i].tolist(), "batch_correct": batch_correct_t[i].tolist()}
                for i in range(k)]


def _check_directions(model: nn.Module, directions: Any, n: int) -> list[Direction]:
    if isinstance(directions, dict):
        directions = [directions]
    if not isinstance(directions, (list, tuple)) or not all(isinstance(d, dict) for d in directions):
        raise TypeError("directions: expected a list of dicts name -> tensor (e.g. from "
                        "filter_normalized_directions)")
    if len(directions) != n:
        raise ValueError(f"directions: expected {n} direction(s) for dims={n}, got {len(directions)}")
    params = dict(model.named_parameters())
    trainable = {name for name, p in params.items() if p.requires_grad}
    checked = []
    for k, direction in enumerate(directions):
        unknown = sorted(set(direction) - set(params))
        if unknown:
            raise ValueError(f"directions[{k}] has keys that are not parameters of the model: {unknown[:5]}")
        missing = sorted(trainable - set(direction))
        if missing:
            raise ValueError(f"directions[{k}] misses trainable parameters of the model: {missing[:5]}")
        fixed = {}
        for name, d in direction.items():
            if not isinstance(d, Tensor):
                raise TypeError(f"directions[{k}][{name!r}]: expected a tensor, got {type(d).__name__}")
            p = params[name]
            if tuple(d.shape) != tuple(p.shape):
                raise ValueError(f"directions[{k}][{name!r}] has shape {tuple(d.shape)}, the parameter "
                                 f"has {tuple(p.shape)}")
            fixed[name] = d.detach().to(device=p.device, dtype=p.dtype)
        checked.append(fixed)
    return checked


def _check_grid(steps: Any, span: Any, dims: int) -> list[np.ndarray]:
    if dims not in (1, 2):
        raise ValueError(f"dims: expected 1 or 2, got {dims!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 2:
        raise ValueError(f"steps: expected an int >= 2 (points per axis), got {steps!r}")
    try:
        arr = np.asarray(span, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"span: expected (lo, hi) or one (lo, hi) per axis, got {span!r}") from None
    if arr.shape == (2,):
        arr = np.stack([arr] * dims)
    if arr.shape != (dims, 2) or not np.all(np.isfinite(arr)) or np.any(arr[:, 0] >= arr[:, 1]):
        raise ValueError(f"span: expected (lo, hi) with lo < hi, or {dims} such pairs, got {span!r}")
    return [np.linspace(lo, hi, steps) for lo, hi in arr]


def default_points_per_pass(device: torch.device) -> int:
    """Grid points per vmapped pass when the caller does not choose: 1 on CPU, 4 elsewhere.

    On CPU stacking points is slower than evaluating them one by one (a CPU forward already keeps
    the cores busy and the batched weights turn convolutions into grouped ones; the figures:
    bench/bench_landscape.py, bench/results/bench_landscape-cpu2.json, bench/results/README.md). On a
    GPU one point rarely fills the device, so several points share a pass.
    """
    return 1 if torch.device(device).type == "cpu" else 4


@renamed_kwargs(batches="data")
def evaluate_points(model: nn.Module, loss_fn: LossFn, data: list[tuple[Tensor, Tensor]],
                    base: dict[str, Tensor], directions: list[Direction], coords: Sequence[Sequence[float]],
                    *, buffers: dict[str, Tensor] | None = None,
                    output_fn: OutputFn | None = None, loss_reduction: str | None = None) -> list[dict[str, float]]:
    """Loss at θ = base + Σ_k coords[i][k]·directions[k] for each i, in one vmapped pass per batch of
    `data` (a list of (inputs, targets) batches).

    `base` must hold every parameter of the model (name -> tensor) and may also hold buffers that move
    (a direction entry for a buffer name moves it too, e.g. BatchNorm statistics along an
    interpolation); `buffers` defaults to the model's. Σ‖p‖₂ counts parameters only.
    `output_fn` picks the logits from the model's output (default rule: common/outputs.py).
    Returns one dict per point with "nll", "accuracy" and "l2_norm". The model is left untouched.
    """
    with eval_mode(model):
        moving_names = {n for d in directions for n, t in d.items() if bool(t.any())}
        moving = {n: t for n, t in base.items() if n in moving_names}
        fixed = {n: t for n, t in base.items() if n not in moving_names}
        shared = dict(buffers if buffers is not None else model.named_buffers())
        return _PointEvaluator(model, moving, fixed, shared, directions, data, loss_fn,
                               check_output_fn(output_fn), loss_reduction)(coords)


def _landscape(model: nn.Module, loss_fn: LossFn, data: Any, *, base: dict[str, Tensor],
               buffers: dict[str, Tensor] | None, directions: list[Direction], coordinates: list[np.ndarray],
               l2_coef: float, out: str | os.PathLike | None, resume: bool, per_pass: int | None,
               progress: bool, desc: str, meta_extra: dict[str, Any],
               output_fn: OutputFn | None = None, loss_reduction: str | None = None) -> LandscapeResult:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}")
    if per_pass is not None and (not isinstance(per_pass, int) or isinstance(per_pass, bool)
                                        or per_pass < 1):
        raise ValueError(f"per_pass: expected an int >= 1 or None, got {per_pass!r}")
    if not isinstance(l2_coef, (int, float)) or not math.isfinite(l2_coef):
        raise ValueError(f"l2_coef: expected a finite number, got {l2_coef!r}")
    check_output_fn(output_fn)
    loss_reduction = loss_reduction_of(loss_fn, loss_reduction)
    device = model_device(model)
    if per_pass is None:
        per_pass = default_points_per_pass(device)
    batches = materialize_batches(data, device=device, name="data")
    dims = len(coordinates)
    index = [(i,) for i in range(len(coordinates[0]))] if dims == 1 else \
        [(i, j) for i in range(len(coordinates[0])) for j in range(len(coordinates[1]))]

    def evaluate(points: list[tuple[int, ...]]) -> list[dict[str, float]]:
        coords = [[float(coordinates[a][i]) for a, i in enumerate(p)] for p in points]
        return evaluate_points(model, loss_fn, batches, base, directions, coords, buffers=buffers,
                               output_fn=output_fn, loss_reduction=loss_reduction)

    meta = print_ = None
    if out is not None:
        meta = {"kind": "loss_landscape", "n_samples": sum(int(x.shape[0]) for x, _ in batches), **meta_extra}
        data_hash = hash_tensors([{"inputs": x, "targets": y} for x, y in batches])
        print_ = fingerprint(
            "loss_landscape/2", parameters=base,
            buffers=dict(buffers if buffers is not None else model.named_buffers()), data_hash=data_hash,
            settings={"directions": hash_tensors(directions), "coordinates": [c.tolist() for c in coordinates],
                      "l2_coef": float(l2_coef), "loss_fn": loss_fn,
                      "loss_reduction": loss_reduction, "output_fn": output_fn, **meta_extra})
    results = run_sweep(evaluate, index, out=out, resume=resume, meta=meta, fingerprint=print_,
                        per_pass=per_pass, desc=desc, progress=progress)
    shape = tuple(len(c) for c in coordinates)
    nll = np.array([float(nan_for_none(r["nll"])) for r in results]).reshape(shape)
    acc = 100.0 * np.array([float(nan_for_none(r["accuracy"])) for r in results]).reshape(shape)
    l2 = np.array([float(nan_for_none(r["l2_norm"])) for r in results]).reshape(shape)
    per_batch: dict[str, Any] = {}
    if all("batch_loss_sum" in r and "batch_correct" in r for r in results):
        def stacked(key: str) -> np.ndarray:   # JSON null (NaN) -> NaN
            return np.array([r[key] for r in results], dtype=object).astype(np.float64).reshape(*shape, len(batches))
        per_batch = {"batch_loss_sum": stacked("batch_loss_sum"), "batch_correct": stacked("batch_correct"),
                     "batch_sizes": [int(x.shape[0]) for x, _ in batches]}
    return LandscapeResult(coordinates=coordinates, loss=nll + float(l2_coef) * l2, nll=nll, accuracy=acc,
                           l2_norm=l2, l2_coef=float(l2_coef),
                           num_samples=sum(int(x.shape[0]) for x, _ in batches), directions=directions,
                           **per_batch)


@renamed_kwargs(points_per_pass="per_pass")
def loss_landscape(model: nn.Module, loss_fn: LossFn, data: Any, *,
                   directions: list[Direction] | Direction | None = None, steps: int = 21,
                   span: Span | Sequence[Span] = (-1.0, 1.0), dims: int = 2, l2_coef: float = 0.0,
                   out: str | os.PathLike | None = None, resume: bool = True,
                   per_pass: int | None = None, seed: int = 0, norm: str = "filter",
                   output_fn: OutputFn | None = None, loss_reduction: str | None = None,
                   progress: bool = True) -> LandscapeResult:
    """Loss (and accuracy) of `model` on a `steps`-point line (dims=1) or `steps`×`steps` grid (dims=2).

    Args:
        model: the network at θ*; evaluated in eval mode, never modified (restored exactly).
        loss_fn: ``(logits, targets) -> scalar batch mean``, e.g. ``nn.CrossEntropyLoss()``; must be
            vmap-compatible (any torch-op loss is).
        output_fn: model output -> logits; default: the output if it is a tensor, else its
            ``.logits``, ``["logits"]`` or first element (common/outputs.py).
        data: one (inputs, targets) batch or an iterable of batches; every point passes over all of it.
            It is read once and kept on the model's device, so it must fit there and be
            deterministic (no random augmentation: under torchrun every rank reads it on its own).
        directions: `dims` dicts name -> tensor over the trainable parameters (default:
            ``filter_normalized_directions(model, dims, norm=norm, seed=seed)``).
        steps: points per axis (>= 2). span: (lo, hi) for every axis, or one pair per axis.
        l2_coef: loss = NLL + l2_coef·Σ_p‖p‖₂ ([paper] uses 0.05 for its plots).
        loss_reduction: 'mean' or 'sum' when loss_fn has no `.reduction` (default 'mean'): the NLL is
            the loss over all samples at once (batches weighted by size, or summed), whatever the batching.
        out: directory to write finished points to as they complete (resume with the same call).
        per_pass: grid points stacked into one vmapped forward pass (memory grows with it:
            activations are per_pass times larger); 1 evaluates point by point. Default
            (None): 1 on CPU, where stacking is slower (see `default_points_per_pass`), 4 on GPUs.
        progress: tqdm bar on rank 0.

    Returns:
        LandscapeResult; loss/nll/accuracy have shape (steps,) or (steps, steps).

    Under torchrun, call it on every rank with the same arguments: each rank evaluates a disjoint
    share of the points and every rank returns the full grid.

    Example:
        >>> import torch, torch.nn as nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> data = (torch.randn(16, 4), torch.randint(0, 3, (16,)))
        >>> res = loss_landscape(model, nn.CrossEntropyLoss(), data, steps=5, progress=False)
        >>> res.loss.shape
        (5, 5)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    coordinates = _check_grid(steps, span, dims)
    if directions is None:
        directions = filter_normalized_directions(model, dims, norm=norm, seed=seed)
    directions = _check_directions(model, directions, dims)
    base = {n: p.detach() for n, p in model.named_parameters()}
    return _landscape(model, loss_fn, data, base=base, buffers=None, directions=directions,
                      coordinates=coordinates, l2_coef=l2_coef, out=out, resume=resume,
                      per_pass=per_pass, progress=progress, desc="landscape",
                      meta_extra={}, output_fn=output_fn, loss_reduction=loss_reduction)

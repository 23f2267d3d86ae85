"""Loss landscape on a 1-D line or 2-D plane through the parameters (SPEC §2).

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

import hashlib
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
from ..common.modes import eval_mode
from ..common.reduction import batch_weights, loss_reduction_of
from ..common.results import Result
from ..sweep import run_sweep
from .directions import Direction, directions_fingerprint, filter_normalized_directions

__all__ = ["loss_landscape", "LandscapeResult", "evaluate_points"]

LossFn = Callable[[Tensor, Tensor], Tensor]
Span = tuple[float, float]


@dataclass
class LandscapeResult(Result):
    """A 1-D or 2-D loss landscape.

    ``loss[i, j]`` (2-D) or ``loss[i]`` (1-D) is the value at ``θ* + coordinates[0][i]·d1
    + coordinates[1][j]·d2``. ``loss = nll + l2_coef·l2_norm`` where ``nll`` is the data loss
    (sample-weighted mean of ``loss_fn`` over the batches) and ``l2_norm`` is Σ_p ‖p‖₂ over all
    parameters at that point (sum of per-tensor L2 norms, not squared). ``accuracy`` is the top-1
    fraction, NaN when the outputs are not (B, C) logits with integer targets.
    """

    coordinates: list[np.ndarray]
    loss: np.ndarray
    nll: np.ndarray
    accuracy: np.ndarray
    l2_norm: np.ndarray
    l2_coef: float = 0.0
    n_samples: int = 0
    directions: list[Direction] | None = field(default=None, repr=False, metadata={"serialize": False})

    @property
    def dims(self) -> int:
        return len(self.coordinates)

    @property
    def relative_loss(self) -> np.ndarray:
        """``loss - min(loss)`` (what the paper plots)."""
        return self.loss - np.nanmin(self.loss)


def _is_classification(out: Any, y: Tensor) -> bool:
    return (isinstance(out, Tensor) and not y.is_floating_point() and not y.is_complex() and y.ndim == 1 and out.ndim == 2
            and out.shape[0] == y.shape[0])


class _PointEvaluator:
    """Evaluates loss/accuracy at points θ0 + Σ_k c_k·d_k, `len(points)` parameter sets per pass.

    `moving`: parameters with a non-zero direction (stacked per point); `fixed`: the other parameters
    and `buffers`, shared by all points."""

    def __init__(self, model: nn.Module, moving: dict[str, Tensor], fixed: dict[str, Tensor],
                 buffers: dict[str, Tensor], directions: list[Direction],
                 batches: list[tuple[Tensor, Tensor]], loss_fn: LossFn, loss_reduction: str | None = None):
        self.model, self.moving, self.fixed = model, moving, fixed
        self.shared = {**{n: b for n, b in buffers.items() if n not in moving}, **fixed}
        self.param_names = {n for n, _ in model.named_parameters()}
        self.directions, self.batches, self.loss_fn = directions, batches, loss_fn
        self.n_samples = sum(int(x.shape[0]) for x, _ in batches)
        # the loss over all samples: batches weighted by size for a 'mean' loss, summed for a 'sum' loss
        self.batch_weights = batch_weights([int(x.shape[0]) for x, _ in batches],
                                           loss_reduction_of(loss_fn, loss_reduction))

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
        out = functional_call(self.model, (params, self.shared), (x,))
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
            nll += loss.detach().double().cpu() * w
            correct += corr.detach().double().cpu()
        l2 = torch.zeros(k, dtype=torch.float64)
        for name, p in params.items():
            if name in self.param_names:
                l2 += torch.linalg.vector_norm(p.reshape(k, -1).double(), dim=1).cpu()
        for name, t in self.fixed.items():
            if name in self.param_names:
                l2 += torch.linalg.vector_norm(t.double()).cpu()
        acc = correct / self.n_samples
        return [{"nll": float(nll[i]), "accuracy": float(acc[i]), "l2_norm": float(l2[i])} for i in range(k)]


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


def _hash_tensors(named: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(named):
        t = named[name].detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def default_points_per_pass(device: torch.device) -> int:
    """Grid points per vmapped pass when the caller does not choose: 1 on CPU, 4 elsewhere.

    On 2 idle CPU cores (128 samples, 2x2 grid, bench/bench_landscape.py) stacking points was
    slower than evaluating them one by one: 2 or 4 points per pass ran at 0.75-0.85x (CIFAR
    ResNet-18) and 0.65-0.70x (ViT-Ti/4) of the per-point speed, since a CPU forward already keeps
    both cores busy and the batched weights turn convolutions into grouped ones. On a GPU one
    point rarely fills the device, so several points share a pass (not yet measured here).
    """
    return 1 if torch.device(device).type == "cpu" else 4


def evaluate_points(model: nn.Module, loss_fn: LossFn, batches: list[tuple[Tensor, Tensor]],
                    base: dict[str, Tensor], directions: list[Direction], coords: Sequence[Sequence[float]],
                    *, buffers: dict[str, Tensor] | None = None,
                    loss_reduction: str | None = None) -> list[dict[str, float]]:
    """Loss at θ = base + Σ_k coords[i][k]·directions[k] for each i, in one vmapped pass per batch.

    `base` must hold every parameter of the model (name -> tensor) and may also hold buffers that move
    (a direction entry for a buffer name moves it too, e.g. BatchNorm statistics along an
    interpolation); `buffers` defaults to the model's. Σ‖p‖₂ counts parameters only.
    Returns one dict per point with "nll", "accuracy" and "l2_norm". The model is left untouched.
    """
    with eval_mode(model):
        moving_names = {n for d in directions for n, t in d.items() if bool(t.any())}
        moving = {n: t for n, t in base.items() if n in moving_names}
        fixed = {n: t for n, t in base.items() if n not in moving_names}
        shared = dict(buffers if buffers is not None else model.named_buffers())
        return _PointEvaluator(model, moving, fixed, shared, directions, batches, loss_fn, loss_reduction)(coords)


def _landscape(model: nn.Module, loss_fn: LossFn, data: Any, *, base: dict[str, Tensor],
               buffers: dict[str, Tensor] | None, directions: list[Direction], coordinates: list[np.ndarray],
               l2_coef: float, out: str | os.PathLike | None, resume: bool, points_per_pass: int | None,
               progress: bool, desc: str, meta_extra: dict[str, Any],
               loss_reduction: str | None = None) -> LandscapeResult:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}")
    if points_per_pass is not None and (not isinstance(points_per_pass, int) or isinstance(points_per_pass, bool)
                                        or points_per_pass < 1):
        raise ValueError(f"points_per_pass: expected an int >= 1 or None, got {points_per_pass!r}")
    if not isinstance(l2_coef, (int, float)) or not math.isfinite(l2_coef):
        raise ValueError(f"l2_coef: expected a finite number, got {l2_coef!r}")
    loss_reduction = loss_reduction_of(loss_fn, loss_reduction)
    device = model_device(model)
    if points_per_pass is None:
        points_per_pass = default_points_per_pass(device)
    batches = materialize_batches(data, device=device, name="data")
    dims = len(coordinates)
    index = [(i,) for i in range(len(coordinates[0]))] if dims == 1 else \
        [(i, j) for i in range(len(coordinates[0])) for j in range(len(coordinates[1]))]

    def evaluate(points: list[tuple[int, ...]]) -> list[dict[str, float]]:
        coords = [[float(coordinates[a][i]) for a, i in enumerate(p)] for p in points]
        return evaluate_points(model, loss_fn, batches, base, directions, coords, buffers=buffers,
                               loss_reduction=loss_reduction)

    meta = None
    if out is not None:
        shared = dict(buffers if buffers is not None else model.named_buffers())
        meta = {
            "kind": "loss_landscape",
            "parameter_shapes_sha256": hashlib.sha256(repr(
                [(n, tuple(t.shape)) for n, t in sorted(base.items())]).encode()).hexdigest(),
            "parameters_sha256": _hash_tensors(base),
            "buffers_sha256": _hash_tensors(shared),
            "directions_sha256": directions_fingerprint(directions),
            "coordinates": [c.tolist() for c in coordinates],
            "l2_coef": float(l2_coef),
            "loss_fn": getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__),
            "n_samples": sum(int(x.shape[0]) for x, _ in batches),
            "n_batches": len(batches),
            "loss_reduction": loss_reduction_of(loss_fn, loss_reduction),
            "input_shape": list(batches[0][0].shape[1:]),
            **meta_extra,
        }
    results = run_sweep(evaluate, index, out=out, resume=resume, meta=meta, chunk_size=points_per_pass,
                        desc=desc, progress=progress)
    shape = tuple(len(c) for c in coordinates)
    nll = np.array([float(r["nll"]) for r in results]).reshape(shape)
    acc = np.array([float(r["accuracy"]) for r in results]).reshape(shape)
    l2 = np.array([float(r["l2_norm"]) for r in results]).reshape(shape)
    return LandscapeResult(coordinates=coordinates, loss=nll + float(l2_coef) * l2, nll=nll, accuracy=acc,
                           l2_norm=l2, l2_coef=float(l2_coef),
                           n_samples=sum(int(x.shape[0]) for x, _ in batches), directions=directions)


def loss_landscape(model: nn.Module, loss_fn: LossFn, data: Any, *,
                   directions: list[Direction] | Direction | None = None, steps: int = 21,
                   span: Span | Sequence[Span] = (-1.0, 1.0), dims: int = 2, l2_coef: float = 0.0,
                   out: str | os.PathLike | None = None, resume: bool = True,
                   points_per_pass: int | None = None, seed: int = 0, norm: str = "filter",
                   loss_reduction: str | None = None, progress: bool = True) -> LandscapeResult:
    """Loss (and accuracy) of `model` on a `steps`-point line (dims=1) or `steps`×`steps` grid (dims=2).

    Args:
        model: the network at θ*; evaluated in eval mode, never modified (restored exactly).
        loss_fn: ``(outputs, targets) -> scalar batch mean``, e.g. ``nn.CrossEntropyLoss()``; must be
            vmap-compatible (any torch-op loss is).
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
        points_per_pass: grid points stacked into one vmapped forward pass (memory grows with it:
            activations are points_per_pass times larger); 1 evaluates point by point. Default
            (None): 1 on CPU, where stacking measured slower (see `default_points_per_pass`), 4 on GPUs.
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
                      points_per_pass=points_per_pass, progress=progress, desc="landscape",
                      meta_extra={}, loss_reduction=loss_reduction)

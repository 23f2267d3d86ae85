"""Paths through parameter space: linear interpolation between two models and the PCA plane of a
training trajectory (Li et al. 2018, §7; docs/methods.md §2). The paper's polar-coordinate trajectory is not
reproduced (withdrawn by its author)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..common.deprecation import renamed_kwargs
from ..common.intervals import Estimate
from ..common.outputs import OutputFn
from ..common.results import Result
from .directions import Direction
from .grid import LandscapeResult, LossFn, Span, _check_grid, _landscape

__all__ = ["interpolate", "trajectory", "TrajectoryResult"]


def _state(checkpoint: Any, k: int) -> dict[str, Tensor]:
    if isinstance(checkpoint, nn.Module):
        return {n: t.detach() for n, t in checkpoint.state_dict(keep_vars=True).items()}
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    if isinstance(checkpoint, Mapping):
        if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], Mapping):
            checkpoint = checkpoint["state_dict"]
        return {str(n): t.detach() for n, t in checkpoint.items() if isinstance(t, Tensor)}
    raise TypeError(f"checkpoints[{k}]: expected an nn.Module, a state dict or a path, "
                    f"got {type(checkpoint).__name__}")


def _parameters_of(state: dict[str, Tensor], model: nn.Module, what: str) -> dict[str, Tensor]:
    out = {}
    for name, p in model.named_parameters():
        if name not in state:
            raise ValueError(f"{what} has no parameter {name!r} of the model")
        t = state[name]
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError(f"{what}[{name!r}] has shape {tuple(t.shape)}, the model's parameter has "
                             f"{tuple(p.shape)}")
        out[name] = t.to(device=p.device, dtype=p.dtype)
    return out


def _buffers_of(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    return {n: state.get(n, b).to(device=b.device, dtype=b.dtype) for n, b in model.named_buffers()}


@renamed_kwargs(points_per_pass="per_pass")
def interpolate(model_a: nn.Module, model_b: nn.Module, loss_fn: LossFn, data: Any, *, steps: int = 21,
                span: Span = (0.0, 1.0), l2_coef: float = 0.0, interpolate_buffers: bool = True,
                out: str | os.PathLike | None = None, resume: bool = True, per_pass: int | None = None,
                output_fn: OutputFn | None = None, progress: bool = True) -> LandscapeResult:
    """Loss along θ(t) = (1−t)·θa + t·θb for t in linspace(*span, steps) (span beyond [0, 1] extrapolates).

    Args:
        model_a, model_b: the same architecture (same parameter names and shapes). model_a is the one
            evaluated (functionally; neither model is modified).
        interpolate_buffers: also interpolate floating-point buffers (BatchNorm statistics), so that
            t=1 is exactly model_b; False keeps model_a's buffers along the whole path.
        Other arguments as in :func:`loss_landscape`.

    Returns:
        a 1-D LandscapeResult with ``coordinates[0] = t``.

    Example:
        >>> import torch, torch.nn as nn
        >>> a, b = nn.Linear(4, 3), nn.Linear(4, 3)
        >>> data = (torch.randn(8, 4), torch.randint(0, 3, (8,)))
        >>> interpolate(a, b, nn.CrossEntropyLoss(), data, steps=3, progress=False).loss.shape
        (3,)
    """
    for name, m in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name}: expected a torch.nn.Module, got {type(m).__name__}")
    coordinates = _check_grid(steps, span, 1)
    theta_a = {n: p.detach() for n, p in model_a.named_parameters()}
    theta_b = _parameters_of(_state(model_b, 1), model_a, "model_b")
    if set(theta_b) != set(theta_a) or len(list(model_b.parameters())) != len(theta_a):
        raise ValueError("model_a and model_b must have the same parameters (names and shapes)")
    direction: Direction = {n: theta_b[n] - theta_a[n] for n in theta_a}
    base = dict(theta_a)
    if interpolate_buffers:
        buffers_b = _buffers_of(_state(model_b, 1), model_a)
        for n, buf in model_a.named_buffers():
            if buf.is_floating_point():
                base[n] = buf.detach()
                direction[n] = buffers_b[n] - buf.detach()
    return _landscape(model_a, loss_fn, data, base=base, buffers=None, directions=[direction],
                      coordinates=coordinates, l2_coef=l2_coef, out=out, resume=resume,
                      per_pass=per_pass, progress=progress, desc="interpolate",
                      meta_extra={"kind": "interpolate", "interpolate_buffers": bool(interpolate_buffers)},
                      output_fn=output_fn)


@dataclass
class TrajectoryResult(Result):
    """Checkpoints projected on the top-2 PCA directions of θ_t − θ_final, and the landscape there.

    ``coordinates[t] = (<θ_t − θ_final, u1>, <θ_t − θ_final, u2>)`` with unit vectors u1, u2;
    ``explained_variance_ratio`` of each direction; ``landscape`` over that plane centred at θ_final.
    """

    coordinates: np.ndarray
    explained_variance_ratio: np.ndarray
    landscape: LandscapeResult | None
    directions: list[Direction] = field(default_factory=list, repr=False, metadata={"serialize": False})

    def summary(self, *, seed: int = 0, num_resamples: int = 1000) -> dict[str, Estimate]:
        """"explained_variance/pc1", "explained_variance/pc2" (no interval: a property of these
        checkpoints, n = checkpoints), and the landscape's summary (border_rise, centre_loss,
        centre_accuracy; `LandscapeResult.summary`) when the loss was mapped.

        Example:
            >>> r = TrajectoryResult(np.zeros((4, 2)), np.array([0.75, 0.25]), None)
            >>> r.summary()["explained_variance/pc1"].value, r.summary()["explained_variance/pc1"].n
            (0.75, 4)
        """
        nan = (float("nan"), float("nan"))
        count = int(np.shape(self.coordinates)[0])
        out = {f"explained_variance/pc{k + 1}": Estimate(float(v), nan, count)
               for k, v in enumerate(np.asarray(self.explained_variance_ratio, dtype=np.float64))}
        if self.landscape is not None:
            out |= self.landscape.summary(seed=seed, num_resamples=num_resamples)
        return out

    def plot(self, **kwargs):
        """The path over the landscape's contour (`fastvit_analysis.plot.landscape.trajectory`) -> Figure."""
        from ..plot.landscape import trajectory

        return trajectory(self, **kwargs)


_COLUMNS = 1 << 20  # parameters per slice: float64 work stays O(rows · _COLUMNS)


def _pca_directions(rows: list[dict[str, Tensor]], names: list[str], center: bool
                    ) -> tuple[list[Direction], np.ndarray]:
    """Top-2 principal directions (unit vectors) of the rows, via the rows' Gram matrix in float64.
    The (rows, P) matrix is kept in the parameters' dtype; float64 is used one column slice at a time."""
    flat = torch.stack([torch.cat([r[n].reshape(-1).cpu() for n in names]) for r in rows])
    r, p = flat.shape
    gram = torch.zeros(r, r, dtype=torch.float64)
    for s in range(0, p, _COLUMNS):
        block = flat[:, s:s + _COLUMNS].double()
        gram += block @ block.T
    if center:
        h = torch.eye(r, dtype=torch.float64) - 1.0 / r
        gram = h @ gram @ h
    evals, evecs = torch.linalg.eigh(gram)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    total = float(evals.sum())
    if total <= 0 or float(evals[1]) <= 1e-12 * total:
        raise ValueError("checkpoints: the differences θ_t − θ_final span fewer than 2 directions; "
                         "pass more (distinct) checkpoints")
    directions: list[Direction] = []
    for k in range(2):
        v = evecs[:, k]
        if center:
            v = v - v.mean()
        u = torch.empty(p, dtype=torch.float64)
        for s in range(0, p, _COLUMNS):
            u[s:s + _COLUMNS] = flat[:, s:s + _COLUMNS].double().T @ v
        u /= torch.linalg.vector_norm(u)
        if float(u[int(torch.argmax(u.abs()))]) < 0:  # fix the sign: deterministic output
            u = -u
        direction, offset = {}, 0
        for n in names:
            size = rows[0][n].numel()
            direction[n] = u[offset:offset + size].reshape(rows[0][n].shape)
            offset += size
        directions.append(direction)
    return directions, (evals[:2] / total).numpy()


@renamed_kwargs(points_per_pass="per_pass")
def trajectory(checkpoints: Sequence[Any], loss_fn: LossFn | None = None, data: Any = None, *,
               model: nn.Module, steps: int = 21, span: Span | Sequence[Span] | None = None,
               margin: float = 0.2, center: bool = True, l2_coef: float = 0.0,
               out: str | os.PathLike | None = None, resume: bool = True, per_pass: int | None = None,
               output_fn: OutputFn | None = None, progress: bool = True) -> TrajectoryResult:
    """Project a training trajectory on the top-2 PCA directions of θ_t − θ_final and map the loss there.

    Args:
        checkpoints: in training order, the last one being θ_final; each an nn.Module, a state dict
            or a path to one (torch.save). At least 3.
        model: the architecture; only used functionally (its own parameters are not read or changed).
            Buffers come from the final checkpoint where it has them, else from `model`.
        loss_fn, data, output_fn: as in :func:`loss_landscape`; with data=None only the projection is computed.
        span: (lo, hi) for both axes or one pair per axis; default: the range of the projected
            checkpoints (and 0) widened by `margin` of its width on each side.
        center: PCA of the centred differences, as Li et al. (sklearn PCA); False: uncentred SVD.
            The rows are θ_t − θ_final for every checkpoint but the last, over all parameters of
            `model` (biases and norm layers included, as Li et al.'s default); buffers are not part
            of the plane.

    Returns:
        TrajectoryResult (coordinates (T, 2), explained_variance_ratio (2,), landscape).

    Example:
        >>> import torch, torch.nn as nn
        >>> m = nn.Linear(4, 3)
        >>> ckpts = [{k: v + 0.1 * torch.randn_like(v) for k, v in m.state_dict().items()} for _ in range(4)]
        >>> trajectory(ckpts, model=m).coordinates.shape
        (4, 2)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    checkpoints = list(checkpoints)
    if len(checkpoints) < 3:
        raise ValueError(f"checkpoints: need at least 3 for a 2-D PCA plane, got {len(checkpoints)}")
    states = [_state(c, k) for k, c in enumerate(checkpoints)]
    thetas = [_parameters_of(s, model, f"checkpoints[{k}]") for k, s in enumerate(states)]
    names = list(thetas[-1])
    final = thetas[-1]
    diffs = [{n: t[n] - final[n] for n in names} for t in thetas]
    directions, ratio = _pca_directions(diffs[:-1], names, center)
    coords = np.array([[float(sum((d[n].double() * u[n].to(d[n].device)).sum() for n in names))
                        for u in directions] for d in diffs])
    landscape = None
    if data is not None:
        if loss_fn is None:
            raise ValueError("loss_fn: required when data is given")
        if span is None:
            lo = np.minimum(coords.min(axis=0), 0.0)
            hi = np.maximum(coords.max(axis=0), 0.0)
            width = np.maximum(hi - lo, 1e-8)
            span = [(float(lo[a] - margin * width[a]), float(hi[a] + margin * width[a])) for a in range(2)]
        coordinates = _check_grid(steps, span, 2)
        device_dirs = [{n: u[n].to(device=final[n].device, dtype=final[n].dtype) for n in names}
                       for u in directions]
        landscape = _landscape(model, loss_fn, data, base=final, buffers=_buffers_of(states[-1], model),
                               directions=device_dirs, coordinates=coordinates, l2_coef=l2_coef, out=out,
                               resume=resume, per_pass=per_pass, progress=progress,
                               desc="trajectory", meta_extra={"kind": "trajectory", "center": bool(center)},
                               output_fn=output_fn)
    return TrajectoryResult(coordinates=coords, explained_variance_ratio=ratio, landscape=landscape,
                            directions=directions)

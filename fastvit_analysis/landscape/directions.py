"""Random, filter-normalised directions in parameter space (Li et al. 2018; docs/methods.md §2).

Which parameters get a direction
--------------------------------
Only trainable parameters (``requires_grad``) appear in a direction; buffers (BatchNorm running
statistics, ``num_batches_tracked``, ...) are never perturbed. Among those, a parameter is *zeroed*
(its direction is 0) unless ``include_bias_bn=True`` when any of these holds:

1. ``param.ndim < 2`` (biases, norm affine parameters, layer scales);
2. it belongs to a normalisation layer: an instance of ``torch.nn`` BatchNorm/InstanceNorm,
   LayerNorm, GroupNorm, LocalResponseNorm, RMSNorm, or any module whose class name contains
   ``"Norm"`` (timm's ``LayerNorm2d``, ``BatchNormAct2d``, ...);
3. it is a position embedding: a component of its dotted name contains one of
   :data:`POSITION_EMBEDDING_KEYWORDS` (``pos_embed``, ``relative_position``, ...), compared
   case-insensitively. Extra keywords can be given with ``exclude=``.

Normalisation of the non-zeroed tensors
---------------------------------------
- ``norm="filter"`` (Li et al.): for every output filter ``w[k]`` (slice along dim 0),
  ``d[k] <- d[k] * ||w[k]|| / (||d[k]|| + 1e-10)``.
- ``norm="axis0"`` ([paper] code): one norm per fibre over dim 0, i.e. ``torch.norm(w, dim=0)``
  for every index of the remaining dimensions, ``d <- d * ||w||_dim0 / (||d||_dim0 + 1e-7)``.
- Tensors that are included only because ``include_bias_bn=True`` (ndim < 2, norm layers, position
  embeddings) get a random direction rescaled to the *whole tensor's* norm (a per-element rule would
  give ``|d_i| = |w_i|``). Li et al.'s 'biasbn' instead copies ``d = w`` for 1-D tensors; the random,
  norm-matched variant keeps the direction random like every other tensor.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

__all__ = ["filter_normalized_directions", "POSITION_EMBEDDING_KEYWORDS", "zeroed_parameter_names",
           "directions_fingerprint"]

Direction = dict[str, Tensor]

#: Substrings (case-insensitive) of a parameter name component that mark a position embedding.
POSITION_EMBEDDING_KEYWORDS: tuple[str, ...] = (
    "pos_embed", "position_embed", "position_embedding", "pos_emb", "absolute_pos",
    "relative_position", "rel_pos",
)

_NORM_TYPES: tuple[type, ...] = tuple(t for t in (
    getattr(nn.modules.batchnorm, "_NormBase", None), nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
    getattr(nn, "RMSNorm", None),
) if t is not None)

_NORMS = ("filter", "axis0")


def _is_norm_module(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "Norm" in type(module).__name__


def _owner_module(model: nn.Module, name: str) -> nn.Module:
    owner = model
    for part in name.split(".")[:-1]:
        owner = getattr(owner, part)
    return owner


def zeroed_parameter_names(model: nn.Module, *, exclude: Iterable[str] = ()) -> list[str]:
    """Names of trainable parameters whose direction is zero by default (see the module docstring).

    Example:
        >>> m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
        >>> zeroed_parameter_names(m)
        ['0.bias', '1.weight', '1.bias']
    """
    keywords = tuple(k.lower() for k in (*POSITION_EMBEDDING_KEYWORDS, *exclude))
    zeroed = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parts = [s.lower() for s in name.split(".")]
        if (p.ndim < 2 or _is_norm_module(_owner_module(model, name))
                or any(k in s for s in parts for k in keywords)):
            zeroed.append(name)
    return zeroed


def _normalize(d: Tensor, w: Tensor, norm: str) -> Tensor:
    if norm == "filter":
        dims = tuple(range(1, w.ndim))
        w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
        d_norm = torch.linalg.vector_norm(d, dim=dims, keepdim=True)
        return d * (w_norm / (d_norm + 1e-10))
    w_norm = torch.linalg.vector_norm(w, dim=0, keepdim=True)
    d_norm = torch.linalg.vector_norm(d, dim=0, keepdim=True)
    return d * (w_norm / (d_norm + 1e-7))


@torch.no_grad()
def filter_normalized_directions(model: nn.Module, n: int = 2, *, norm: str = "filter", seed: int = 0,
                                 include_bias_bn: bool = False, exclude: Iterable[str] = ()
                                 ) -> list[Direction]:
    """Draw `n` random directions d ~ N(0, I) over the model's trainable parameters and normalise them.

    Args:
        model: any module; only its trainable parameters get entries.
        n: number of directions (2 for a 2-D landscape).
        norm: "filter" (Li et al., per output filter = slice along dim 0) or "axis0" ([paper] code,
            one norm per fibre over dim 0).
        seed: seed of a private generator (the global RNG is untouched); the same seed gives the
            same directions. Draws happen on CPU in float32, so they do not depend on the device.
        include_bias_bn: also perturb ndim < 2 tensors, norm layers and position embeddings, with a
            random direction matched to the tensor's norm (see the module docstring).
        exclude: extra name keywords to zero, in addition to :data:`POSITION_EMBEDDING_KEYWORDS`.

    Returns:
        list of `n` dicts ``name -> tensor`` (same shape, dtype and device as the parameter).

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> d1, d2 = filter_normalized_directions(m, seed=1)
        >>> torch.allclose(d1["0.weight"][0].norm(), m[0].weight[0].norm())
        True
        >>> bool((d1["1.weight"] == 0).all())
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected a positive int (number of directions), got {n!r}")
    if norm not in _NORMS:
        raise ValueError(f"norm: expected one of {_NORMS}, got {norm!r}")
    if isinstance(exclude, str):
        exclude = (exclude,)
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters to draw directions for")
    zeroed = set(zeroed_parameter_names(model, exclude=exclude))
    generator = torch.Generator().manual_seed(int(seed))
    directions: list[Direction] = []
    for _ in range(n):
        direction: Direction = {}
        for name, p in params:
            # Draw for every tensor so that the stream, hence each tensor's direction, does not depend
            # on which tensors are zeroed.
            d = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            w = p.detach().to("cpu", torch.float32)
            if name in zeroed:
                if include_bias_bn:
                    d = d * (torch.linalg.vector_norm(w) / (torch.linalg.vector_norm(d) + 1e-10))
                else:
                    d = torch.zeros_like(d)
            else:
                d = _normalize(d, w, norm)
            direction[name] = d.to(device=p.device, dtype=p.dtype)
        directions.append(direction)
    return directions


def directions_fingerprint(directions: list[Direction]) -> str:
    """SHA-256 over names, shapes and values of the directions (identifies a landscape's plane);
    the one tensor hash of `common.fingerprint`."""
    from ..common.fingerprint import hash_tensors

    return hash_tensors(list(directions))

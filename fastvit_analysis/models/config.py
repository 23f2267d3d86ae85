"""Registration helper: turn a plain builder into a timm model entry point that remembers how it was built.

Every model registered here gets
  - `model.pretrained_cfg` / `model.default_cfg` (timm's data config: input size, mean, std, classifier),
  - `model.fastvit_spec = {"model_name": ..., "model_kwargs": {...}}`, which `train` stores in checkpoints
    so that `fastvit_analysis.models.create(checkpoint)` can rebuild the model.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from timm.models import register_model
from torch import nn

from ..common.constants import CIFAR10_MEAN, CIFAR10_STD

CIFAR_MEAN_STD = (CIFAR10_MEAN, CIFAR10_STD)
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# model name -> "cnn" | "vit" | "hybrid" for the models registered by fastvit_analysis
MODEL_KINDS: dict[str, str] = {}

# Keys timm.create_model passes to every entry point; our builders do not take them.
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def attach_spec(model: nn.Module, name: str, kwargs: dict[str, Any]) -> nn.Module:
    """Record the registry name and build kwargs on `model` (read back by `train` and `create`)."""
    model.fastvit_spec = {"model_name": name, "model_kwargs": dict(kwargs)}
    return model


def fastvit_model(mean_std: tuple[tuple[float, ...], tuple[float, ...]], *, kind: str,
                  input_size: tuple[int, int, int] = (3, 32, 32),
                  classifier: str = "fc") -> Callable[[Callable[..., nn.Module]], Callable]:
    """Decorator registering `builder(**kwargs) -> nn.Module` with timm under the builder's name."""
    if kind not in ("cnn", "vit", "hybrid"):
        raise ValueError(f"kind must be 'cnn', 'vit' or 'hybrid', got {kind!r}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__

        @functools.wraps(builder)
        def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
            if pretrained:
                raise ValueError(f"{name}: no pretrained weights are published; train one with "
                                 f"fastvit_analysis.train and load the checkpoint with fastvit_analysis.models.create")
            for key in _TIMM_ONLY_KWARGS:
                kwargs.pop(key, None)
            model = builder(**kwargs)
            size = kwargs.get("img_size", input_size[1:])
            size = (size, size) if isinstance(size, int) else tuple(size)
            cfg = dict(architecture=name, input_size=(kwargs.get("in_chans", input_size[0]), *size),
                       mean=mean_std[0], std=mean_std[1], num_classes=getattr(model, "num_classes", None),
                       interpolation="bicubic", crop_pct=1.0, classifier=classifier)
            model.pretrained_cfg = cfg
            model.default_cfg = cfg
            return attach_spec(model, name, kwargs)

        MODEL_KINDS[name] = kind
        return register_model(entry)

    return decorate

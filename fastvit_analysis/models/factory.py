"""Build a model from a timm name or from a checkpoint written by `fastvit_analysis.train`.

Example:
    >>> from fastvit_analysis.models import create, model_kind
    >>> model = create("demo_resnet", num_classes=5)
    >>> model_kind(model)
    'cnn'
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from .config import MODEL_KINDS, attach_spec

__all__ = ["create", "model_kind", "load_checkpoint", "model_spec", "is_checkpoint_path", "state_dict_mismatch",
           "describe_mismatch"]

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def is_checkpoint_path(name_or_path: str) -> bool:
    """True when the string names a checkpoint file rather than a registry name."""
    return (name_or_path.endswith(_CHECKPOINT_SUFFIXES) or os.sep in name_or_path or "/" in name_or_path
            or Path(name_or_path).is_file())


def _unknown_model_error(name: str) -> ValueError:
    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    ours = ", ".join(sorted(MODEL_KINDS))
    return ValueError(f"unknown model {name!r}{hint} (fastvit_analysis models: {ours}; or any timm model name, "
                      f"or the path of a checkpoint written by fastvit_analysis.train)")


def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """{"model_name", "model_kwargs"} needed to rebuild `model`, or None when unknown."""
    spec = getattr(model, "fastvit_spec", None)
    if spec is not None:
        return {"model_name": spec["model_name"], "model_kwargs": dict(spec["model_kwargs"])}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("architecture") if isinstance(cfg, dict) else getattr(cfg, "architecture", None)
    if name:
        return {"model_name": name, "model_kwargs": dict(getattr(model, "_model_args", {}) or {})}
    return None


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `train` ({"model", "model_name", "model_kwargs", "epoch", ...}), or a bare
    state_dict file (`torch.save(model.state_dict(), path)`), returned as {"model": state_dict}.

    The file is unpickled (it holds optimizer and RNG states), so load only checkpoints you trust.

    Example:
        >>> import tempfile, torch
        >>> path = tempfile.mktemp(suffix=".pt"); torch.save(torch.nn.Linear(2, 1).state_dict(), path)
        >>> sorted(load_checkpoint(path)["model"])
        ['bias', 'weight']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupt or not a torch file
        raise ValueError(f"checkpoint {str(path)!r} could not be read: {exc}") from exc
    if _is_state_dict(ckpt):
        return {"model": dict(ckpt)}
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} is neither a fastvit_analysis checkpoint (a dict with 'model', "
                         f"'model_name', 'model_kwargs') nor a state_dict (parameter names -> tensors)")
    return ckpt


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def create(name_or_checkpoint: str, **kwargs: Any) -> nn.Module:
    """Build a model by timm registry name, or rebuild one from a `train` checkpoint and load its weights.

    Args:
        name_or_checkpoint: a timm model name (fastvit_analysis's models are registered on import) or the
            path of a checkpoint (`out/last.pt`, `out/checkpoint_epoch5.pt`).
        **kwargs: build kwargs (num_classes, drop_path_rate, img_size, ...). For a checkpoint they override
            the stored kwargs; a `model_name=` kwarg names the architecture for a bare state_dict file.

    Raises:
        ValueError: unknown model name, or a checkpoint whose weights do not fit the model.
        FileNotFoundError: a checkpoint path that does not exist.
    """
    if not isinstance(name_or_checkpoint, str) or not name_or_checkpoint:
        raise TypeError(f"name_or_checkpoint must be a non-empty string, got {name_or_checkpoint!r}")
    if not is_checkpoint_path(name_or_checkpoint):
        if not timm.is_model(name_or_checkpoint):
            raise _unknown_model_error(name_or_checkpoint)
        model = timm.create_model(name_or_checkpoint, **kwargs)
        if getattr(model, "fastvit_spec", None) is None:
            attach_spec(model, name_or_checkpoint, kwargs)
        return model

    ckpt = load_checkpoint(name_or_checkpoint)
    name = kwargs.pop("model_name", None) or ckpt.get("model_name")
    if not name:
        raise ValueError(f"checkpoint {name_or_checkpoint!r} does not record its model_name; "
                         f"pass model_name=... to create()")
    if not timm.is_model(name):
        raise _unknown_model_error(name)
    build_kwargs = {**(ckpt.get("model_kwargs") or {}), **kwargs}
    model = create(name, **build_kwargs)
    state = ckpt["model"]
    missing, unexpected = state_dict_mismatch(model, state)
    if missing or unexpected:
        raise ValueError(f"checkpoint {name_or_checkpoint!r} does not match model {name!r} "
                         f"(kwargs {build_kwargs}): {describe_mismatch(missing, unexpected)}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # shape mismatch
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        raise ValueError(f"checkpoint {name_or_checkpoint!r} does not match model {name!r} "
                         f"(kwargs {build_kwargs}): {detail}") from None
    return model


def state_dict_mismatch(model: nn.Module, state: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(missing, unexpected): the sorted keys of `model.state_dict()` absent from `state`, and the reverse.

    Example:
        >>> state_dict_mismatch(nn.Linear(2, 1), {"weight": torch.zeros(1, 2), "scale": torch.ones(1)})
        (['bias'], ['scale'])
    """
    expected = set(model.state_dict())
    given = set(state)
    return sorted(expected - given), sorted(given - expected)


def describe_mismatch(missing: list[str], unexpected: list[str]) -> str:
    """One line naming how many keys are missing / unexpected, with up to three examples of each.

    Example:
        >>> describe_mismatch(["bias"], ["scale"])
        '1 missing keys (e.g. bias); 1 unexpected keys (e.g. scale)'
    """
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    return "; ".join(parts)


def model_kind(model: nn.Module | str) -> str:
    """"cnn", "vit" or "hybrid" (convolutions and attention) for a model or a registry name.

    Registered fastvit_analysis models know their kind; other models are classified by their modules:
    attention modules without spatial convolutions -> "vit", both -> "hybrid", neither -> "cnn".
    """
    if isinstance(model, str):
        if model in MODEL_KINDS:
            return MODEL_KINDS[model]
        if not timm.is_model(model):
            raise _unknown_model_error(model)
        with torch.device("meta"):
            model = timm.create_model(model)
    spec = model_spec(model)
    if spec is not None and spec["model_name"] in MODEL_KINDS:
        return MODEL_KINDS[spec["model_name"]]
    has_attention = has_conv = False
    for module in model.modules():
        cls = type(module).__name__.lower()
        if "attention" in cls or isinstance(module, nn.MultiheadAttention):
            has_attention = True
        elif isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1) and module.groups == 1:
            # a strided patch-embedding conv (stride == kernel) is a ViT stem, not a convolution block
            if module.stride != module.kernel_size:
                has_conv = True
    if has_attention:
        return "hybrid" if has_conv else "vit"
    return "cnn"

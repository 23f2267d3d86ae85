"""Latent extraction: the output of every block of a vision model, captured with forward hooks.

A model's latents are described by a list of `LatentSpec` (which module, input or output, what kind of
block, how many prefix tokens); `LatentExtractor` registers the hooks and either returns the latents of
one batch or hands each latent to a callback as soon as it is computed, so that analyses over a whole
loader keep only reduced statistics.

Canonical latent layouts: feature maps (B, C, H, W) (NHWC outputs such as Swin's are permuted, a view),
token sequences (B, N, C) whose first `num_prefix_tokens` are class/distillation/register tokens, or
vectors (B, D).

Example:
    >>> import timm, torch
    >>> from fastvit_analysis import extract_features
    >>> vit = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=32,
    ...                                                          depth=2, num_heads=2)
    >>> feats = extract_features(vit, torch.randn(2, 3, 32, 32))
    >>> list(feats)[:3], feats.kinds["blocks.0:msa"], feats.num_prefix_tokens["blocks.0:msa"]
    (['patch_embed', 'blocks.0:msa', 'blocks.0:mlp'], 'msa', 1)
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..common.batches import is_single_batch, iter_batches, model_device
from ..common.deprecation import renamed_attribute, renamed_fields, renamed_kwargs
from ..common.modes import eval_mode
from ..common.progress import progress_bar

KINDS = ("msa", "conv", "mlp", "embed", "downsample")
LAYOUTS = ("auto", "nchw", "nhwc", "tokens")

LatentCallback = Callable[["LatentSpec", Tensor], None]


@renamed_fields(prefix_tokens="num_prefix_tokens")
@dataclass(frozen=True)
class LatentSpec:
    """Where one latent comes from.

    name: the latent's name (a module path, or `<block>:msa` / `<block>:mlp` for the two residual
        halves of a transformer block). module: path of the hooked module. capture: "output" of the
        module or its first positional "input". kind: one of KINDS. layout: "nchw", "nhwc", "tokens"
        or "auto" (4-D -> nchw, 3-D -> tokens). num_prefix_tokens: leading non-spatial tokens.
    """

    name: str
    module: str
    kind: str = "conv"
    capture: str = "output"
    layout: str = "auto"
    num_prefix_tokens: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind of latent {self.name!r} must be one of {KINDS}, got {self.kind!r}")
        if self.capture not in ("output", "input"):
            raise ValueError(f"capture must be 'output' or 'input', got {self.capture!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")

    def canonical(self, value: Any) -> Tensor:
        """The hooked value as (B, C, H, W), (B, N, C) or (B, D)."""
        z = _first_tensor(value, self.name)
        if self.layout == "nhwc":
            if z.ndim != 4:
                raise ValueError(f"latent {self.name!r}: layout 'nhwc' needs a 4-D tensor, got {tuple(z.shape)}")
            return z.permute(0, 3, 1, 2)
        return z


class Features(OrderedDict):
    """Ordered name -> latent, with `.specs`, `.kinds` and `.num_prefix_tokens` (both name -> value)."""

    specs: list[LatentSpec]

    @property
    def kinds(self) -> dict[str, str]:
        return {s.name: s.kind for s in self.specs}

    @property
    def num_prefix_tokens(self) -> dict[str, int]:
        return {s.name: s.num_prefix_tokens for s in self.specs}

    prefix_tokens = renamed_attribute("prefix_tokens", "num_prefix_tokens")


def batch_count(data: Any) -> int | None:
    """Number of batches in `data` when known (for progress bars)."""
    if is_single_batch(data):
        return 1
    try:
        return len(data)
    except TypeError:
        return None


def _first_tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    raise TypeError(f"latent {name!r}: hooked value is {type(value).__name__}, expected a tensor")


@renamed_kwargs(prefix_tokens="num_prefix_tokens")
def to_feature_map(z: Tensor, num_prefix_tokens: int = 0) -> Tensor:
    """A latent as (B, C, H, W): maps unchanged; tokens (B, N, C) lose their prefix and are reshaped to
    (B, C, √N', √N') (a view when possible).

    Example:
        >>> to_feature_map(torch.randn(2, 17, 8), 1).shape
        torch.Size([2, 8, 4, 4])
    """
    if z.ndim == 4:
        return z
    if z.ndim != 3:
        raise ValueError(f"expected a (B, C, H, W) map or (B, N, C) tokens, got shape {tuple(z.shape)}")
    b, n, c = z.shape
    side = math.isqrt(max(n - num_prefix_tokens, 0))
    if side * side != n - num_prefix_tokens or side == 0:
        raise ValueError(f"{n} tokens minus {num_prefix_tokens} prefix tokens is not a square grid; pass "
                         f"num_prefix_tokens correctly or use feature maps")
    return z[:, num_prefix_tokens:].transpose(1, 2).reshape(b, c, side, side)


# --------------------------------------------------------------------------------------------------
# Which latents a model has
# --------------------------------------------------------------------------------------------------

def _is_downsampling(module: nn.Module) -> bool:
    for m in module.modules():
        stride = getattr(m, "stride", None)
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and stride is not None:
            s = stride if isinstance(stride, (tuple, list)) else (stride,)
            if any(int(v) > 1 for v in s):
                return True
    return False


def _transformer_block_specs(path: str, block: nn.Module, prefix: int, out_layout: str = "auto"
                             ) -> list[LatentSpec] | None:
    """Two latents (x + attn, x + mlp) for pre-norm (and timm post-norm) transformer blocks."""
    cls = type(block).__name__
    if cls == "ResPostBlock" and hasattr(block, "mlp"):  # x + norm1(attn(x)) is the input of mlp
        half = LatentSpec(f"{path}:msa", f"{path}.mlp", "msa", "input", "tokens", prefix)
    elif hasattr(block, "norm2") and hasattr(block, "mlp") and (hasattr(block, "attn") or hasattr(block, "attention")):
        half = LatentSpec(f"{path}:msa", f"{path}.norm2", "msa", "input", "tokens", prefix)
    elif cls == "EncoderBlock" and hasattr(block, "ln_2"):  # torchvision ViT
        half = LatentSpec(f"{path}:msa", f"{path}.ln_2", "msa", "input", "tokens", prefix)
    else:
        return None
    return [half, LatentSpec(f"{path}:mlp", path, "mlp", "output", out_layout, prefix)]


def _block_specs(path: str, block: nn.Module, prefix: int = 0, out_layout: str = "auto") -> list[LatentSpec]:
    specs = _transformer_block_specs(path, block, prefix, out_layout)
    if specs is not None:
        return specs
    if _is_msa_block(block):
        return [LatentSpec(path, path, "msa", layout=out_layout)]
    kind = "downsample" if _is_downsampling(block) else "conv"
    return [LatentSpec(path, path, kind, layout=out_layout)]


def _is_msa_block(block: nn.Module) -> bool:
    """A block (e.g. AlterNet's local-attention block) holding an attention module."""
    for m in block.modules():
        cls = type(m).__name__.lower()
        if m is not block and ("attention" in cls or cls.endswith("attn")):
            return True
    return False


def _sequence(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return list(module.named_children())


def _resnet_like(model: nn.Module) -> list[LatentSpec]:
    stem = "maxpool" if hasattr(model, "maxpool") else "act1" if hasattr(model, "act1") else "relu"
    specs = [LatentSpec(stem, stem, "embed")]
    stage_names = [n for n, _ in model.named_children() if n.startswith("layer") and n[5:].isdigit()]
    for stage in sorted(stage_names, key=lambda n: int(n[5:])):
        for i, block in _sequence(getattr(model, stage)):
            specs += _block_specs(f"{stage}.{i}", block)
    return specs


def _staged(model: nn.Module, stages_attr: str, nhwc: bool = False) -> list[LatentSpec]:
    """ConvNeXt, ResNetV2, Swin (layers), AlterNet-like: stem/patch_embed, then per stage an optional
    downsample and its blocks."""
    layout = "nhwc" if nhwc else "auto"
    specs: list[LatentSpec] = []
    for stem in ("stem", "patch_embed"):
        if hasattr(model, stem):
            specs.append(LatentSpec(stem, stem, "embed", layout=layout))
            break
    for s, stage in _sequence(getattr(model, stages_attr)):
        base = f"{stages_attr}.{s}"
        down = getattr(stage, "downsample", None)
        if down is not None and not isinstance(down, nn.Identity) and hasattr(stage, "blocks"):
            specs.append(LatentSpec(f"{base}.downsample", f"{base}.downsample", "downsample", layout=layout))
        blocks = getattr(stage, "blocks", stage)
        prefix_base = f"{base}.blocks" if hasattr(stage, "blocks") else base
        for i, block in _sequence(blocks):
            specs += _block_specs(f"{prefix_base}.{i}", block, 0, layout)
    return specs


def _vit_timm(model: nn.Module) -> list[LatentSpec]:
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    specs = [LatentSpec("patch_embed", "blocks.0", "embed", "input", "tokens", prefix)]
    for i, block in _sequence(model.blocks):
        got = _transformer_block_specs(f"blocks.{i}", block, prefix, "tokens")
        if got is None:
            raise ValueError(f"blocks.{i} ({type(block).__name__}) is not a transformer block this "
                             f"extractor knows; pass layers=[...] module names")
        specs += got
    return specs


def _vit_torchvision(model: nn.Module) -> list[LatentSpec]:
    blocks = _sequence(model.encoder.layers)
    specs = [LatentSpec("embedding", f"encoder.layers.{blocks[0][0]}", "embed", "input", "tokens", 1)]
    for name, block in blocks:
        specs += _transformer_block_specs(f"encoder.layers.{name}", block, 1, "tokens") or []
    return specs


def _pit(model: nn.Module) -> list[LatentSpec]:
    prefix = int(getattr(model, "num_tokens", 1))
    specs = [LatentSpec("patch_embed", "pos_drop", "embed")]
    for s, stage in _sequence(model.transformers):
        if getattr(stage, "pool", None) is not None:
            specs.append(LatentSpec(f"transformers.{s}.pool", f"transformers.{s}.pool", "downsample"))
        for i, block in _sequence(stage.blocks):
            specs += _transformer_block_specs(f"transformers.{s}.blocks.{i}", block, prefix, "tokens") or []
    return specs


def default_latent_specs(model: nn.Module) -> list[LatentSpec]:
    """The block outputs of a known model family (docs/methods.md §3), in forward order.

    Families: timm ResNet/ResNetV2/ConvNeXt/ViT/DeiT/PiT/Swin, AlterNet, torchvision ResNet/ViT, and any
    model with `stem` + `stages` (stages with `blocks`). Raises ValueError for others: pass `layers=`.
    """
    cls = type(model).__name__
    if hasattr(model, "encoder") and hasattr(model.encoder, "layers") and hasattr(model, "conv_proj"):
        return _vit_torchvision(model)
    if hasattr(model, "transformers") and hasattr(model, "cls_token"):
        return _pit(model)
    if hasattr(model, "blocks") and hasattr(model, "patch_embed") and not hasattr(model, "stages"):
        return _vit_timm(model)
    if hasattr(model, "layers") and hasattr(model, "patch_embed") and "Swin" in cls:
        return _staged(model, "layers", nhwc=True)
    if hasattr(model, "stages"):
        return _staged(model, "stages")
    if hasattr(model, "layer1") and hasattr(model, "conv1"):
        return _resnet_like(model)
    raise ValueError(f"no default latents for {cls}; pass layers=[module names] "
                     f"(e.g. {[n for n, _ in list(model.named_modules())[1:4]]})")


def _infer_kind(module: nn.Module, name: str) -> str:
    cls = type(module).__name__.lower()
    if "embed" in cls or "stem" in name.split(".")[-1]:
        return "embed"
    if "attention" in cls or cls.endswith("attn") or _is_msa_block(module):
        return "msa"
    if "mlp" in cls:
        return "mlp"
    if _is_downsampling(module) or "merging" in cls or "downsample" in name.split(".")[-1]:
        return "downsample"
    return "conv"


def latent_specs(model: nn.Module, layers: Sequence[str | LatentSpec] | None = None,
                 kinds: Mapping[str, str] | None = None) -> list[LatentSpec]:
    """Resolve `layers` (None: the family's default latents; else default latent names, module names
    of `model`, or LatentSpec objects) and apply `kinds` overrides (name -> kind)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if layers is None:
        specs = default_latent_specs(model)
    else:
        if isinstance(layers, str):
            raise TypeError("layers must be a sequence of names, not one string")
        try:
            defaults = {s.name: s for s in default_latent_specs(model)}
        except ValueError:
            defaults = {}
        specs = []
        prefix = int(getattr(model, "num_prefix_tokens", getattr(model, "num_tokens", 0)) or 0)
        for item in layers:
            if isinstance(item, LatentSpec):
                specs.append(item)
            elif item in defaults:
                specs.append(defaults[item])
            elif item in modules and item != "":
                specs.append(LatentSpec(item, item, _infer_kind(modules[item], item), num_prefix_tokens=prefix))
            else:
                close = [n for n in list(defaults) + list(modules) if n and item.split(".")[0] in n][:8]
                raise ValueError(f"layers: {item!r} is neither a latent nor a module of "
                                 f"{type(model).__name__}; e.g. {close or list(defaults)[:8]}")
        if not specs:
            raise ValueError("layers is empty")
    for s in specs:
        if s.module not in modules:
            raise ValueError(f"latent {s.name!r}: module {s.module!r} not found in {type(model).__name__}")
    if len({s.name for s in specs}) != len(specs):
        raise ValueError("layers: latent names must be unique")
    if kinds:
        names = {s.name for s in specs}
        unknown = [k for k in kinds if k not in names]
        if unknown:
            raise ValueError(f"kinds: unknown latent names {unknown}")
        specs = [replace(s, kind=kinds.get(s.name, s.kind)) for s in specs]
    return specs


# --------------------------------------------------------------------------------------------------
# Running the model with hooks
# --------------------------------------------------------------------------------------------------

class LatentExtractor:
    """Forward hooks that capture a model's latents, one batch at a time.

    `extractor(x)` returns a `Features` dict; `extractor(x, on_latent=f)` calls `f(spec, latent)` inside
    the hook instead (nothing kept, the latent may be freed right away); `extractor.stream(data, f)`
    does so over every batch of a loader. The model runs in eval mode under no_grad.

    Example:
        >>> import timm
        >>> ex = LatentExtractor(timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1]))
        >>> shapes = {}
        >>> ex.stream((torch.randn(4, 3, 32, 32), torch.zeros(4)),
        ...           lambda spec, z: shapes.__setitem__(spec.name, tuple(z.shape)), progress=False)
        4
        >>> shapes["layer2.0"]
        (4, 128, 4, 4)
    """

    def __init__(self, model: nn.Module, layers: Sequence[str | LatentSpec] | None = None, *,
                 kinds: Mapping[str, str] | None = None):
        self.model = model
        self.specs = latent_specs(model, layers, kinds)
        self._modules = dict(model.named_modules())

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def kinds(self) -> dict[str, str]:
        return {s.name: s.kind for s in self.specs}

    def depths(self) -> list[float]:
        """Normalised depth i / (L - 1) of every latent (0 for a single latent)."""
        n = len(self.specs)
        return [i / (n - 1) if n > 1 else 0.0 for i in range(n)]

    def __call__(self, x: Tensor, on_latent: LatentCallback | None = None, *, clone: bool = True) -> Features | None:
        store: dict[str, Tensor] = {}
        seen_specs: dict[str, LatentSpec] = {}

        def deliver(spec: LatentSpec, value: Any) -> None:
            if spec.name in seen_specs:
                raise ValueError(f"latent {spec.name!r}: module {spec.module!r} ran more than once in one "
                                 f"forward pass (a shared module, e.g. torchvision's reused ReLU); pick a "
                                 f"module that runs once")
            z = spec.canonical(value)
            if z.ndim == 3 and spec.layout == "auto" and spec.num_prefix_tokens:
                side = math.isqrt(z.shape[1])
                if side * side == z.shape[1]:  # a square grid already: no prefix in this output
                    spec = replace(spec, num_prefix_tokens=0)
            seen_specs[spec.name] = spec
            if on_latent is not None:
                on_latent(spec, z.detach())
            else:
                store[spec.name] = z.detach().clone() if clone else z.detach()

        handles = []
        try:
            for spec in self.specs:
                module = self._modules[spec.module]
                if spec.capture == "output":
                    handles.append(module.register_forward_hook(
                        lambda m, args, out, spec=spec: deliver(spec, out)))
                else:
                    handles.append(module.register_forward_pre_hook(
                        lambda m, args, spec=spec: deliver(spec, args[0] if args else None)))
            with eval_mode(self.model), torch.no_grad():
                self.model(x)
        finally:
            for h in handles:
                h.remove()
        if on_latent is not None:
            return None
        missing = [s.name for s in self.specs if s.name not in store]
        if missing:
            raise RuntimeError(f"latents {missing} were not produced by the forward pass (their modules "
                               f"were not called); pass other layers")
        ordered = Features((s.name, store[s.name]) for s in self.specs)
        ordered.specs = [seen_specs[s.name] for s in self.specs]
        return ordered

    def stream(self, data: Any, on_latent: LatentCallback, *, progress: bool = True,
               desc: str = "features", on_batch: Callable[[Tensor, Tensor], None] | None = None) -> int:
        """Run every batch of `data` through the model, calling `on_latent(spec, latent)` per latent;
        `on_batch(x, y)` (optional) is called after each batch. Returns the number of samples."""
        device = model_device(self.model)
        total = batch_count(data)
        seen = 0
        for x, y in progress_bar(iter_batches(data, device=device), total=total, desc=desc, progress=progress):
            self(x, on_latent)
            if on_batch is not None:
                on_batch(x, y)
            seen += x.shape[0]
        return seen


def extract_features(model: nn.Module, x: Tensor, *, layers: Sequence[str | LatentSpec] | None = None,
                     kinds: Mapping[str, str] | None = None) -> Features:
    """The latents of one batch `x` (B, 3, H, W): ordered name -> tensor, with `.kinds` (name ->
    "msa" | "conv" | "mlp" | "embed" | "downsample") and `.num_prefix_tokens` (name -> int).

    Latents per docs/methods.md §3: ResNets the stem then every residual block; ViTs the patch embedding then per
    block x + attn and x + mlp (25 latents for 12 blocks). Token latents stay (B, N, C) including the
    prefix tokens (see `to_feature_map`); NHWC maps (Swin) are returned as (B, C, H, W) views. Logits are
    excluded. `layers` may name default latents or any module (its output is taken).

    Example:
        >>> import timm
        >>> net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1])
        >>> feats = extract_features(net, torch.randn(2, 3, 32, 32))
        >>> list(feats)[:2], feats.kinds["layer2.0"]
        (['maxpool', 'layer1.0'], 'downsample')
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor batch (B, C, H, W), got {type(x).__name__}")
    extractor = LatentExtractor(model, layers, kinds=kinds)
    return extractor(x.to(model_device(model)))

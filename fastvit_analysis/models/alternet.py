"""AlterNet (Park & Kim, 2022): a pre-activation ResNet whose stages end in local-attention (MSA) blocks.

A stage of n blocks with m MSA blocks is laid out as C·(n−2m) followed by (C, M)·m, where C is a
pre-activation bottleneck block and M an MSA block:

    M: BN → GELU → 1×1 conv C→C/4 → BN → window attention (p×p windows) → 1×1 conv → C → DropPath → + x

With no MSA block the same class is a pre-activation ResNet (`preact_resnet50_cifar`).

Example:
    >>> import torch, timm, fastvit_analysis  # registers the models with timm
    >>> model = timm.create_model("demo_alternet")
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from .config import CIFAR_MEAN_STD, IMAGENET_MEAN_STD, fastvit_model

__all__ = ["SelectableAttention", "WindowAttention", "PreActBottleneck", "MSABlock", "AlterNet", "ATTENTION_IMPLS"]

ATTENTION_IMPLS = ("math", "fused")


def _conv1x1(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=bias)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def relative_position_index(window_size: int) -> Tensor:
    """(p², p²) index into the flattened (2p−1)×(2p−1) bias table: entry [i, j] encodes the offset
    (row_j − row_i, col_j − col_i) of window position j seen from position i."""
    p = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")).flatten(1)  # (2, p²)
    offset = coords[:, None, :] - coords[:, :, None] + (p - 1)  # (2, p², p²), each in [0, 2p−2]
    return offset[0] * (2 * p - 1) + offset[1]


class SelectableAttention:
    """Mixin: an `attention_impl` attribute ("math" or "fused") checked when set."""

    _attention_impl: str = "math"

    @property
    def attention_impl(self) -> str:
        return self._attention_impl

    @attention_impl.setter
    def attention_impl(self, value: str) -> None:
        if value not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {value!r}")
        self._attention_impl = value


class WindowAttention(SelectableAttention, nn.Module):
    """Multi-head self-attention inside non-overlapping p×p windows of a (B, C, H, W) map.

    q, k, v are 1×1 convolutions to `heads·dim_head` channels; the output projection is a 1×1 conv
    to `dim_out` (with bias). One relative-position bias table of shape (2p−1, 2p−1) is shared by all
    heads. `attention_impl` picks the kernel: "math" (plain softmax(q kᵀ·scale + bias) v, differentiable
    to any order) or "fused" (`fastvit_analysis.attention.fused.fused_attention`).

    Shapes: input (B, dim_in, H, W) with H, W divisible by p -> output (B, dim_out, H, W).
    """

    def __init__(self, dim_in: int, dim_out: int | None = None, *, window_size: int = 4, heads: int = 3,
                 dim_head: int = 64) -> None:
        super().__init__()
        if window_size < 1 or heads < 1 or dim_head < 1:
            raise ValueError(f"window_size, heads and dim_head must be >= 1, got {window_size}, {heads}, {dim_head}")
        dim_out = dim_in if dim_out is None else dim_out
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.window_size = window_size
        self.scale = dim_head ** -0.5
        self.to_q = _conv1x1(dim_in, inner)
        self.to_kv = _conv1x1(dim_in, 2 * inner)
        self.to_out = _conv1x1(inner, dim_out, bias=True)
        self.rel_pos_bias = nn.Parameter(torch.randn(2 * window_size - 1, 2 * window_size - 1) * 0.02)
        self.register_buffer("rel_index", relative_position_index(window_size), persistent=False)

    def relative_position_bias(self) -> Tensor:
        """(p², p²) additive attention bias, the same for every head."""
        return self.rel_pos_bias.flatten()[self.rel_index]

    def _to_windows(self, t: Tensor) -> Tensor:
        # (B, heads·d, H, W) -> (B·windows, heads, p·p, d)
        b, _, h, w = t.shape
        p = self.window_size
        t = t.reshape(b, self.heads, self.dim_head, h // p, p, w // p, p)
        t = t.permute(0, 3, 5, 1, 4, 6, 2)
        return t.reshape(b * (h // p) * (w // p), self.heads, p * p, self.dim_head)

    def _from_windows(self, t: Tensor, b: int, h: int, w: int) -> Tensor:
        p = self.window_size
        t = t.reshape(b, h // p, w // p, self.heads, p, p, self.dim_head)
        t = t.permute(0, 3, 6, 1, 4, 2, 5)
        return t.reshape(b, self.heads * self.dim_head, h, w)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        p = self.window_size
        if h % p or w % p:
            raise ValueError(f"WindowAttention: feature map {h}x{w} is not divisible by window_size={p}; "
                             f"pick an input size whose feature maps are multiples of {p}")
        kv = self.to_kv(x)
        inner = self.heads * self.dim_head
        q = self._to_windows(self.to_q(x))
        k = self._to_windows(kv[:, :inner])
        v = self._to_windows(kv[:, inner:])
        bias = self.relative_position_bias()
        if self._attention_impl == "fused":
            from fastvit_analysis.attention.fused import fused_attention

            out = fused_attention(q, k, v, scale=self.scale,
                                  attn_bias=bias.unsqueeze(0).expand(self.heads, -1, -1))
        else:
            attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale + bias, dim=-1)
            out = torch.matmul(attn, v)
        return self.to_out(self._from_windows(out, b, h, w))

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, dim_head={self.dim_head}, window_size={self.window_size}, "
                f"attention_impl={self._attention_impl!r}")


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1×1, BN-ReLU-3×3(stride), BN-ReLU-1×1(×4), DropPath, + shortcut.

    The projection shortcut (1×1 conv, used when stride ≠ 1 or the width changes) reads the
    pre-activated input, as in He et al. (2016b)."""

    expansion = 4

    def __init__(self, dim_in: int, planes: int, *, stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        dim_out = planes * self.expansion
        self.norm1 = nn.BatchNorm2d(dim_in)
        self.conv1 = _conv1x1(dim_in, planes)
        self.norm2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.norm3 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, dim_out)
        self.shortcut = _conv1x1(dim_in, dim_out, stride) if stride != 1 or dim_in != dim_out else None
        self.drop_path = DropPath(drop_path)  # kept at rate 0 so that train(drop_path=...) can set it

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.norm2(out)))
        out = self.conv3(F.relu(self.norm3(out)))
        return self.drop_path(out) + skip


class MSABlock(nn.Module):
    """AlterNet's MSA block: BN → GELU → 1×1 conv C→C/4 → BN → WindowAttention → C → DropPath → + x."""

    expansion = 4

    def __init__(self, dim: int, *, heads: int, dim_head: int = 64, window_size: int = 4,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        width = dim // self.expansion
        self.norm1 = nn.BatchNorm2d(dim)
        self.act = nn.GELU()
        self.conv = _conv1x1(dim, width)
        self.norm2 = nn.BatchNorm2d(width)
        self.attn = WindowAttention(width, dim, window_size=window_size, heads=heads, dim_head=dim_head)
        self.drop_path = DropPath(drop_path)  # kept at rate 0 so that train(drop_path=...) can set it

    def forward(self, x: Tensor) -> Tensor:
        out = self.norm2(self.conv(self.act(self.norm1(x))))
        return self.drop_path(self.attn(out)) + x


def _as_tuple(name: str, value: Sequence[int], n: int) -> tuple[int, ...]:
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name} must have one entry per stage ({n}), got {value}")
    return value


class AlterNet(nn.Module):
    """Pre-activation bottleneck ResNet with MSA blocks at the end of stages.

    Args:
        depths: blocks per stage (n), e.g. (3, 4, 6, 4).
        msa_blocks: MSA blocks per stage (m), 2m <= n; all zeros gives a pre-activation ResNet.
        widths: bottleneck widths per stage; a stage outputs 4× its width.
        heads: attention heads per stage (used only where m > 0).
        dim_head: channels per head.
        window_size: p of the p×p attention windows.
        stem: "cifar" (3×3 conv, stride 1) or "imagenet" (7×7 conv stride 2 + 3×3 max-pool stride 2).
        stem_width: output channels of the stem.
        drop_path_rate: DropPath rate of the last block, increasing linearly from 0 over all blocks.
        img_size: optional input size; when given, checked against the window size of every MSA stage
            (any size whose MSA-stage maps are multiples of p works at run time).

    Shapes: (B, in_chans, H, W) -> (B, num_classes).
    """

    def __init__(self, depths: Sequence[int] = (3, 4, 6, 4), msa_blocks: Sequence[int] = (0, 1, 3, 2), *,
                 widths: Sequence[int] = (64, 128, 256, 512), heads: Sequence[int] = (3, 6, 12, 24),
                 dim_head: int = 64, window_size: int = 7, stem: str = "imagenet", stem_width: int = 64,
                 num_classes: int = 1000, in_chans: int = 3, drop_path_rate: float = 0.0,
                 drop_rate: float = 0.0, global_pool: str = "avg", img_size: int | None = None) -> None:
        super().__init__()
        n_stages = len(tuple(depths))
        if n_stages == 0:
            raise ValueError("depths must name at least one stage")
        depths = _as_tuple("depths", depths, n_stages)
        msa_blocks = _as_tuple("msa_blocks", msa_blocks, n_stages)
        widths = _as_tuple("widths", widths, n_stages)
        heads = _as_tuple("heads", heads, n_stages)
        for i, (n, m) in enumerate(zip(depths, msa_blocks)):
            if n < 1 or m < 0 or 2 * m > n:
                raise ValueError(f"stage {i}: need depths >= 1 and 0 <= 2*msa_blocks <= depths, got n={n}, m={m}")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if global_pool != "avg":
            raise ValueError(f"AlterNet supports only global_pool='avg', got {global_pool!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")

        if img_size is not None:
            size = img_size if isinstance(img_size, int) else int(img_size[0])
            size //= 1 if stem == "cifar" else 4
            for i, m in enumerate(msa_blocks):
                side = size // 2 ** i
                if m and (side < window_size or side % window_size):
                    raise ValueError(f"img_size={img_size}: stage {i} maps are {side}x{side}, not a multiple of "
                                     f"window_size={window_size}; pick img_size or window_size to fit")
        self.img_size = img_size
        self.depths, self.msa_blocks, self.widths = depths, msa_blocks, widths
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        if stem == "cifar":
            self.stem = _conv3x3(in_chans, stem_width)
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, stem_width, kernel_size=7, stride=2, padding=3, bias=False),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )

        total = sum(depths)
        rates = [drop_path_rate * j / max(total - 1, 1) for j in range(total)]
        stages, channels, j = [], stem_width, 0
        self.feature_info = []
        reduction = 1 if stem == "cifar" else 4
        for i, (n, m, width, h) in enumerate(zip(depths, msa_blocks, widths, heads)):
            layout = ["C"] * (n - 2 * m) + ["C", "M"] * m
            blocks = []
            for k, kind in enumerate(layout):
                stride = 2 if (k == 0 and i > 0) else 1
                if kind == "C":
                    blocks.append(PreActBottleneck(channels, width, stride=stride, drop_path=rates[j]))
                    channels = width * PreActBottleneck.expansion
                else:
                    blocks.append(MSABlock(channels, heads=h, dim_head=dim_head, window_size=window_size,
                                           drop_path=rates[j]))
                j += 1
            stages.append(nn.Sequential(*blocks))
            reduction *= 2 if i > 0 else 1
            self.feature_info.append(dict(num_chs=channels, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.norm = nn.BatchNorm2d(channels)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> last stage's map (B, num_features, H', W'), before the head's BN."""
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = F.relu(self.norm(x)).mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


_ALTERNET50 = dict(depths=(3, 4, 6, 4), widths=(64, 128, 256, 512), heads=(3, 6, 12, 24), dim_head=64)
_RESNET50 = dict(depths=(3, 4, 6, 3), msa_blocks=(0, 0, 0, 0), widths=(64, 128, 256, 512), heads=(1, 1, 1, 1))
# ~9M multiply-adds per 32×32 image: a few CPU minutes of training on the embedded data
_DEMO = dict(depths=(1, 1, 2, 2), widths=(8, 16, 32, 64), heads=(1, 2, 4, 8), dim_head=16, stem_width=8,
             window_size=4, stem="cifar", num_classes=10)


@fastvit_model(CIFAR_MEAN_STD, kind="hybrid")
def alternet50_cifar(**kwargs) -> AlterNet:
    """AlterNet-50 for 32×32 inputs as in the paper's CIFAR-100 figure: m = (0, 1, 1, 2), window 4."""
    return AlterNet(**{**_ALTERNET50, "msa_blocks": (0, 1, 1, 2), "window_size": 4, "stem": "cifar",
                       "num_classes": 100, **kwargs})


@fastvit_model(CIFAR_MEAN_STD, kind="hybrid")
def alternet50_cifar_ref(**kwargs) -> AlterNet:
    """AlterNet-50 for 32×32 inputs with the reference factory's m = (0, 1, 3, 2), window 4."""
    return AlterNet(**{**_ALTERNET50, "msa_blocks": (0, 1, 3, 2), "window_size": 4, "stem": "cifar",
                       "num_classes": 100, **kwargs})


@fastvit_model(IMAGENET_MEAN_STD, kind="hybrid", input_size=(3, 224, 224))
def alternet50(**kwargs) -> AlterNet:
    """AlterNet-50 for ImageNet: 7×7/2 stem + max-pool, window 7, m = (0, 1, 3, 2)."""
    return AlterNet(**{**_ALTERNET50, "msa_blocks": (0, 1, 3, 2), "window_size": 7, "stem": "imagenet",
                       "num_classes": 1000, **kwargs})


@fastvit_model(CIFAR_MEAN_STD, kind="cnn")
def preact_resnet50_cifar(**kwargs) -> AlterNet:
    """Pre-activation ResNet-50 (bottleneck, (3, 4, 6, 3)) with the CIFAR stem."""
    return AlterNet(**{**_RESNET50, "stem": "cifar", "num_classes": 100, **kwargs})


@fastvit_model(CIFAR_MEAN_STD, kind="cnn")
def demo_resnet(**kwargs) -> AlterNet:
    """Small pre-activation ResNet for the demo (~0.22M parameters): widths 8/16/32/64, blocks (1, 1, 2, 2)."""
    return AlterNet(**{**_DEMO, "msa_blocks": (0, 0, 0, 0), **kwargs})


@fastvit_model(CIFAR_MEAN_STD, kind="hybrid")
def demo_alternet(**kwargs) -> AlterNet:
    """Small AlterNet for the demo: demo_resnet's layout with the last block of stages 3 and 4 an MSA block.

    The window is the last stage's map side, img_size // 8 (4 at 32×32, the default; 3 at 24×24, 2 at
    16×16), so stage 4's MSA is global and stage 3's splits into 2×2 windows; an explicit window_size wins.
    """
    size = kwargs.get("img_size")
    if size is not None and "window_size" not in kwargs:
        side = size if isinstance(size, int) else int(size[0])
        kwargs["window_size"] = max(1, side // 8)
    return AlterNet(**{**_DEMO, "msa_blocks": (0, 0, 1, 1), **kwargs})

"""CIFAR (32×32) configurations of timm's ViT, PiT and Swin, and a ViT with local k×k attention.

Example:
    >>> import torch, timm, fastvit_analysis
    >>> model = timm.create_model("vit_ti_local_cifar", window=5, depth=1, img_size=8)
    >>> model(torch.randn(2, 3, 8, 8)).shape
    torch.Size([2, 100])
"""
from __future__ import annotations

import torch
from timm.models.pit import PoolingVisionTransformer
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from .alternet import SelectableAttention
from .config import CIFAR_MEAN_STD, fastvit_model

__all__ = ["LocalTokenAttention", "local_attention_mask"]

LOCAL_WINDOWS = (3, 5, 8)
_MASKED = -1e9  # additive bias of a masked pair: exp underflows to exactly 0 in float32


def local_attention_mask(grid: int, window: int, num_prefix_tokens: int = 1) -> Tensor:
    """(N, N) bool, N = prefix + grid²: True where query i may attend to key j.

    Patch token (r, c) sees the patch tokens (r + dr, c + dc) with dr, dc in
    [−⌊(k−1)/2⌋, ⌈(k−1)/2⌉] (a k×k neighbourhood, centred for odd k; clipped at the borders).
    Prefix (class) tokens see and are seen by every token.
    """
    if grid < 1 or window < 1:
        raise ValueError(f"grid and window must be >= 1, got grid={grid}, window={window}")
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    lo, hi = -((window - 1) // 2), window // 2
    dr = rows[None, :] - rows[:, None]
    dc = cols[None, :] - cols[:, None]
    local = (dr >= lo) & (dr <= hi) & (dc >= lo) & (dc <= hi)
    n = num_prefix_tokens + grid * grid
    allowed = torch.ones(n, n, dtype=torch.bool)
    allowed[num_prefix_tokens:, num_prefix_tokens:] = local
    return allowed


class LocalTokenAttention(SelectableAttention, nn.Module):
    """timm ViT attention restricted to a k×k neighbourhood of patch tokens (see `local_attention_mask`).

    Takes over the projections of a timm `Attention` (same parameter names, so the parameter count is the
    ViT's). `attention_impl` is "math" (default) or "fused" like `WindowAttention`.
    Shapes: (B, N, C) -> (B, N, C), N = num_prefix_tokens + grid².
    """

    def __init__(self, attn: nn.Module, window: int, num_prefix_tokens: int = 1) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.head_dim = attn.head_dim
        self.scale = attn.scale
        self.qkv, self.proj = attn.qkv, attn.proj
        self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        self.attn_drop, self.proj_drop = attn.attn_drop, attn.proj_drop
        self.window = window
        self.num_prefix_tokens = num_prefix_tokens
        self._bias_cache: dict[tuple[int, str], Tensor] = {}

    def attention_bias(self, n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """(N, N) additive bias: 0 inside the neighbourhood, −1e9 outside."""
        key = (n, str(device))
        if key not in self._bias_cache:
            grid = round((n - self.num_prefix_tokens) ** 0.5)
            if grid * grid + self.num_prefix_tokens != n:
                raise ValueError(f"LocalTokenAttention: {n} tokens is not {self.num_prefix_tokens} prefix tokens "
                                 f"plus a square grid")
            allowed = local_attention_mask(grid, self.window, self.num_prefix_tokens)
            self._bias_cache[key] = torch.zeros(n, n, device=device).masked_fill(~allowed.to(device), _MASKED)
        return self._bias_cache[key].to(dtype)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("LocalTokenAttention builds its own mask; attn_mask/is_causal are not supported")
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        bias = self.attention_bias(n, x.device, x.dtype)
        if self._attention_impl == "fused":
            from fastvit_analysis.attention.fused import fused_attention

            out = fused_attention(q, k, v, scale=self.scale,
                                  attn_bias=bias.unsqueeze(0).expand(self.num_heads, -1, -1))
        else:
            attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale + bias, dim=-1)
            out = torch.matmul(self.attn_drop(attn), v)
        out = out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, window={self.window}, attention_impl={self._attention_impl!r}"


_VIT_TI = dict(img_size=32, patch_size=2, embed_dim=192, depth=12, num_heads=3, num_classes=100)


@fastvit_model(CIFAR_MEAN_STD, kind="vit", classifier="head")
def vit_ti_cifar(**kwargs) -> VisionTransformer:
    """ViT-Ti for 32×32: patch 2 (16×16 tokens), dim 192, depth 12, 3 heads, class token."""
    return VisionTransformer(**{**_VIT_TI, **kwargs})


@fastvit_model(CIFAR_MEAN_STD, kind="vit", classifier="head")
def vit_ti_gap_cifar(**kwargs) -> VisionTransformer:
    """ViT-Ti for 32×32 without a class token: the head reads the mean of the patch tokens."""
    return VisionTransformer(**{**_VIT_TI, "class_token": False, "global_pool": "avg", "fc_norm": False, **kwargs})


@fastvit_model(CIFAR_MEAN_STD, kind="vit", classifier="head")
def vit_ti_local_cifar(window: int = 3, **kwargs) -> VisionTransformer:
    """ViT-Ti for 32×32 whose attention sees only a k×k neighbourhood of patch tokens (window k in 3, 5, 8)."""
    if window not in LOCAL_WINDOWS:
        raise ValueError(f"vit_ti_local_cifar: window must be one of {LOCAL_WINDOWS}, got {window!r}")
    model = VisionTransformer(**{**_VIT_TI, **kwargs})
    for block in model.blocks:
        block.attn = LocalTokenAttention(block.attn, window, model.num_prefix_tokens)
    return model


@fastvit_model(CIFAR_MEAN_STD, kind="vit", classifier="head")
def pit_ti_cifar(**kwargs) -> PoolingVisionTransformer:
    """PiT-Ti for 32×32: patch 2, stride 2 (16×16 tokens, pooled to 8×8 and 4×4), dims 64/128/256."""
    args = dict(img_size=32, patch_size=2, stride=2, base_dims=(32, 32, 32), depth=(2, 6, 4), heads=(2, 4, 8),
                mlp_ratio=4, num_classes=100)
    return PoolingVisionTransformer(**{**args, **kwargs})


@fastvit_model(CIFAR_MEAN_STD, kind="vit", classifier="head.fc")
def swin_ti_cifar(**kwargs) -> SwinTransformer:
    """Swin-Ti for 32×32: patch 1 (32×32 tokens), window 4, dim 96, depths (2, 2, 6, 2)."""
    args = dict(img_size=32, patch_size=1, window_size=4, embed_dim=96, depths=(2, 2, 6, 2),
                num_heads=(3, 6, 12, 24), num_classes=100, drop_path_rate=0.0)
    return SwinTransformer(**{**args, **kwargs})


@fastvit_model(CIFAR_MEAN_STD, kind="vit", classifier="head")
def demo_vit(**kwargs) -> VisionTransformer:
    """Small ViT for the demo: patch 4 (8×8 tokens), dim 96, depth 4, 3 heads, MLP ratio 2, class token
    (~0.31M parameters, ~20M multiply-adds per image)."""
    args = dict(img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2, num_classes=10)
    return VisionTransformer(**{**args, **kwargs})

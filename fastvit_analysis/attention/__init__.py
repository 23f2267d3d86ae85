"""HVP-capable fused attention (Triton on GPU, composite torch on CPU) and model patching.

    fused_attention(q, k, v, *, scale=None, attn_bias=None)   SDPA-shaped, second-order AD
    patch_attention(model) / unpatch_attention(model)          swap timm/torchvision attention
    attention_patched(model)                                   context manager (restores)
    math_attention(...)                                        reference: SDPA math backend
"""
from .fused import SUPPORTED_HEAD_DIMS, fused_attention
from .patch import attention_patched, is_patched, patch_attention, unpatch_attention
from .reference import math_attention

__all__ = ["fused_attention", "patch_attention", "unpatch_attention", "attention_patched",
           "is_patched", "math_attention", "SUPPORTED_HEAD_DIMS"]

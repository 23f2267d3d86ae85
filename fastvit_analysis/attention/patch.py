"""Swap the attention of timm / torchvision / AlterNet models for ``fused_attention``, in place.

Patching replaces a module's ``forward`` with a bound method (parameters, buffers and the module
tree stay the same objects) and is undone by :func:`unpatch_attention`.  Supported:

* timm modules that follow timm's ``fused_attn`` convention (``timm.layers.Attention`` used by
  ViT/DeiT/PiT/..., Swin's ``WindowAttention`` with its relative-position bias and shift mask):
  their own forward runs with ``fused_attn=True`` and its ``F.scaled_dot_product_attention``
  call is redirected to ``fused_attention`` (masks become additive biases).  Calls that
  fused_attention cannot serve exactly (dropout while training, causal masks, unsupported head
  dims) go to SDPA unchanged.
* ConViT's ``MHSA`` blocks (ConViT's ``GPSA`` mixes two softmaxes and is skipped with a warning).
* ``torch.nn.MultiheadAttention`` (e.g. in torchvision's ViT ``EncoderBlock``).
* Any module with an ``attention_impl`` attribute (AlterNet's local attention): set to "fused".
"""
from __future__ import annotations

import contextlib
import types
import warnings
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .fused import SUPPORTED_HEAD_DIMS, fused_attention

_STATE = "_fastvit_attention_patch"


# ---------------------------------------------------------------------------- SDPA redirection
def _mask_to_bias(attn_mask: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        bias = torch.zeros(attn_mask.shape, dtype=dtype, device=attn_mask.device)
        return bias.masked_fill(~attn_mask, float("-inf"))
    return attn_mask.to(dtype)


def _sdpa_fusable(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor], dropout_p: float,
                  is_causal: bool, enable_gqa: bool) -> Optional[str]:
    """None when fused_attention computes this SDPA call exactly, else the reason it cannot."""
    if dropout_p:
        return "attention dropout is active (model.train() with attn_drop > 0)"
    if is_causal:
        return "causal attention"
    if enable_gqa:
        return "grouped-query attention"
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2]:
        return f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        return f"head dim {q.shape[-1]} not in {SUPPORTED_HEAD_DIMS}"
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float64, torch.float32,
                                                            torch.float16, torch.bfloat16):
        return f"dtype {q.dtype}"
    if attn_mask is not None and attn_mask.dim() > 4:
        return "attn_mask with more than 4 dims"
    return None


class _RedirectSDPA(TorchFunctionMode):
    """Routes F.scaled_dot_product_attention to fused_attention while a patched forward runs."""

    def __init__(self, owner: nn.Module):
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return _fused_sdpa(self.owner, *args, **kwargs)
        return func(*args, **kwargs)


def _fused_sdpa(owner: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None, dropout_p: float = 0.0, is_causal: bool = False,
                scale: Optional[float] = None, enable_gqa: bool = False) -> Tensor:
    reason = _sdpa_fusable(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa)
    if reason is not None:
        _warn_fallback(owner, reason)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                              dropout_p=dropout_p, is_causal=is_causal,
                                              scale=scale, enable_gqa=enable_gqa)
    return fused_attention(query, key, value, scale=scale,
                           attn_bias=_mask_to_bias(attn_mask, query.dtype))


def _warn_fallback(owner: nn.Module, reason: str) -> None:
    state = getattr(owner, _STATE, None)
    if state is not None and not state.get("warned"):
        state["warned"] = True
        warnings.warn(f"patch_attention: {type(owner).__name__} runs PyTorch SDPA for this call "
                      f"({reason}); no second-order AD through it", stacklevel=4)


def _sdpa_redirect_forward(self: nn.Module, *args, **kwargs):
    with _RedirectSDPA(self):
        return type(self).forward(self, *args, **kwargs)


# ---------------------------------------------------------------------------- explicit forwards
def _convit_mhsa_forward(self: nn.Module, x: Tensor) -> Tensor:
    """ConViT MHSA.forward with the softmax(QK^T)V core fused (same weights, same math)."""
    batch, tokens, channels = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    reason = None
    if self.training and self.attn_drop.p > 0:
        reason = "attention dropout is active"
    elif q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        reason = f"head dim {q.shape[-1]} not in {SUPPORTED_HEAD_DIMS}"
    if reason is not None:
        _warn_fallback(self, reason)
        return type(self).forward(self, x)
    out = fused_attention(q, k, v, scale=self.scale)
    out = out.transpose(1, 2).reshape(batch, tokens, channels)
    return self.proj_drop(self.proj(out))


def _mha_forward(self: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
                 key_padding_mask: Optional[Tensor] = None, need_weights: bool = True,
                 attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                 is_causal: bool = False):
    """nn.MultiheadAttention.forward through fused_attention when the call allows it."""
    reason = None
    if need_weights:
        reason = "need_weights=True asks for the attention matrix"
    elif key_padding_mask is not None or is_causal:
        reason = "key_padding_mask / is_causal"
    elif self.bias_k is not None or self.add_zero_attn:
        reason = "bias_k / add_zero_attn"
    elif self.training and self.dropout > 0:
        reason = "attention dropout is active"
    elif self.head_dim not in SUPPORTED_HEAD_DIMS:
        reason = f"head dim {self.head_dim} not in {SUPPORTED_HEAD_DIMS}"
    elif query.dim() != 3:
        reason = "unbatched input"
    if reason is not None:
        _warn_fallback(self, reason)
        return type(self).forward(self, query, key, value, key_padding_mask=key_padding_mask,
                                  need_weights=need_weights, attn_mask=attn_mask,
                                  average_attn_weights=average_attn_weights, is_causal=is_causal)
    if not self.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    embed, heads = self.embed_dim, self.num_heads
    if self._qkv_same_embed_dim:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
    b_q = b_k = b_v = None
    if self.in_proj_bias is not None:
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)

    def heads_first(t: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
        y = F.linear(t, w, b)
        return y.reshape(y.shape[0], y.shape[1], heads, self.head_dim).transpose(1, 2)

    q, k, v = heads_first(query, w_q, b_q), heads_first(key, w_k, b_k), heads_first(value, w_v, b_v)
    bias = None
    if attn_mask is not None:
        # nn.MultiheadAttention's boolean masks mark the *forbidden* positions (SDPA's the allowed).
        bias = _mask_to_bias(~attn_mask if attn_mask.dtype == torch.bool else attn_mask, q.dtype)
        if bias.dim() == 3:  # (B * heads, L, S)
            bias = bias.reshape(q.shape[0], heads, bias.shape[-2], bias.shape[-1])
    out = fused_attention(q, k, v, attn_bias=bias)
    out = out.transpose(1, 2).reshape(q.shape[0], q.shape[2], embed)
    out = self.out_proj(out)
    if not self.batch_first:
        out = out.transpose(0, 1)
    return out, None


# ---------------------------------------------------------------------------- classification
def _timm_class(module_path: str, name: str):
    try:
        module = __import__(module_path, fromlist=[name])
        return getattr(module, name)
    except (ImportError, AttributeError):
        return None


def _patch_kind(module: nn.Module) -> Optional[str]:
    if hasattr(module, "attention_impl"):
        return "attention_impl"
    gpsa = _timm_class("timm.models.convit", "GPSA")
    if gpsa is not None and isinstance(module, gpsa):
        return "unsupported"
    mhsa = _timm_class("timm.models.convit", "MHSA")
    if mhsa is not None and isinstance(module, mhsa):
        return "convit_mhsa"
    if isinstance(module, nn.MultiheadAttention):
        return "mha"
    if isinstance(getattr(module, "fused_attn", None), bool):
        return "sdpa_redirect"
    return None


_FORWARDS = {"convit_mhsa": _convit_mhsa_forward, "mha": _mha_forward,
             "sdpa_redirect": _sdpa_redirect_forward}


def _patch_one(module: nn.Module, kind: str) -> bool:
    if getattr(module, _STATE, None) is not None:
        return False
    if kind == "unsupported":
        warnings.warn(f"patch_attention: {type(module).__name__} (mixed positional/content "
                      "softmax) cannot be expressed as one fused attention; left unpatched "
                      "(it runs eager math, which supports HVPs but stores N x N)", stacklevel=3)
        return False
    state: dict = {"kind": kind, "had_forward": "forward" in module.__dict__,
                   "old_forward": module.__dict__.get("forward")}
    if kind == "attention_impl":
        state["old_impl"] = module.attention_impl
        module.attention_impl = "fused"
    else:
        if kind == "sdpa_redirect":
            state["old_fused_attn"] = module.fused_attn
            module.fused_attn = True
        module.forward = types.MethodType(_FORWARDS[kind], module)
    setattr(module, _STATE, state)
    return True


def _unpatch_one(module: nn.Module) -> bool:
    state = module.__dict__.get(_STATE)
    if state is None:
        return False
    if state["kind"] == "attention_impl":
        module.attention_impl = state["old_impl"]
    else:
        if state["kind"] == "sdpa_redirect":
            module.fused_attn = state["old_fused_attn"]
        if state["had_forward"]:
            module.forward = state["old_forward"]
        else:
            del module.forward
    delattr(module, _STATE)
    return True


# ---------------------------------------------------------------------------- public API
def patch_attention(model: nn.Module) -> int:
    """Swap every supported attention module in ``model`` for fused_attention, in place.

    Returns the number of modules patched (already patched modules are not counted again).
    Outputs are unchanged (same weights); Hessian-vector products (torch.func.jvp of
    torch.func.grad) then pass through the attention in O(N) memory.

    Example:
        >>> import timm
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8)
        >>> patch_attention(model)
        12
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"patch_attention: model must be a torch.nn.Module, got {type(model).__name__}")
    count = 0
    for module in model.modules():
        kind = _patch_kind(module)
        if kind is not None and _patch_one(module, kind):
            count += 1
    return count


def unpatch_attention(model: nn.Module) -> int:
    """Undo :func:`patch_attention` on every module of ``model``; returns how many were restored."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"unpatch_attention: model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(_unpatch_one(module) for module in model.modules())


@contextlib.contextmanager
def attention_patched(model: nn.Module) -> Iterator[int]:
    """Patch ``model`` for the duration of a ``with`` block, then restore exactly what was patched.

    Example:
        >>> import timm
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8)
        >>> with attention_patched(model) as n_patched:
        ...     logits = model(torch.randn(1, 3, 32, 32))
        >>> n_patched, is_patched(model.blocks[0].attn)
        (12, False)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"attention_patched: model must be a torch.nn.Module, got {type(model).__name__}")
    patched = []
    for module in model.modules():
        kind = _patch_kind(module)
        if kind is not None and _patch_one(module, kind):
            patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            _unpatch_one(module)


def is_patched(module: nn.Module) -> bool:
    """Whether ``module`` itself is currently patched by patch_attention."""
    return module.__dict__.get(_STATE) is not None


__all__ = ["patch_attention", "unpatch_attention", "attention_patched", "is_patched"]

"""Shape/dtype ("fake", meta) implementations so the compiled ops trace under torch.compile.

`register_fakes()` registers them once the extension has defined the ops' schemas (load_extension calls
it); importing this module registers nothing, so it imports before the extension loads.
"""
from __future__ import annotations

import torch

_registered = False


def _out_dtype(maps: torch.Tensor) -> torch.dtype:
    return torch.float64 if maps.dtype == torch.float64 else torch.float32


def _diag_log_amplitude_fake(maps: torch.Tensor, reduce: bool) -> torch.Tensor:
    torch._check(maps.dim() == 4, lambda: "maps must be 4-D (B, C, n, n)")
    torch._check(maps.shape[2] == maps.shape[3], lambda: "maps must be square")
    num_freq = (maps.shape[2] + 1) // 2
    shape = (num_freq,) if reduce else (maps.shape[0], maps.shape[1], num_freq)
    return maps.new_empty(shape, dtype=_out_dtype(maps))


def _feature_moments_fake(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    torch._check(maps.dim() == 4, lambda: "maps must be 4-D (B, C, H, W)")
    shape = (maps.shape[0], maps.shape[1])
    dtype = _out_dtype(maps)
    return maps.new_empty(shape, dtype=dtype), maps.new_empty(shape, dtype=dtype)


def register_fakes() -> None:
    """Register the fake implementations (once per process; needs the ops' schemas)."""
    global _registered
    if not _registered:
        torch.library.register_fake("fastvit_analysis::diag_log_amplitude")(_diag_log_amplitude_fake)
        torch.library.register_fake("fastvit_analysis::feature_moments")(_feature_moments_fake)
        _registered = True

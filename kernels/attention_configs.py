"""Autotune configs of the attention kernels and their per-target pruning by shared memory.

Every kernel (``fwd``, ``bwd_kv``, ``bwd_q``) autotunes over ``CONFIGS``; before tuning,
``early_config_prune`` drops the configs whose estimated shared memory exceeds the device's
opt-in limit (A100 ~163 KB, H100/H200 ~227 KB), so a config that cannot launch on a target
is never tried there. The estimate is a deliberately generous upper bound (every pipelined
load buffered ``num_stages`` times, plus the resident tiles and the dot-operand scratch);
tools/compile_checks.py compiles each kept config ahead of time and fails if one does not fit.

Example:
    >>> cfg = [c for c in CONFIGS if c.kwargs == {"BLOCK_M": 128, "BLOCK_N": 128}][0]
    >>> fits("fwd", cfg, head_dim=64, elt_bytes=2, jvp=False, limit=SHARED_LIMITS[90])
    True
"""
from __future__ import annotations

import os

import triton

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
KERNELS = ("fwd", "bwd_kv", "bwd_q")

# Max dynamic shared memory per block (opt-in), bytes, by compute capability (major*10+minor).
SHARED_LIMITS = {80: 166912, 86: 101376, 89: 101376, 90: 232448}

# (BLOCK_M, BLOCK_N, num_warps, num_stages): the Ampere-era grid plus Hopper-sized tiles
# (128 x 128 / 128 x 64 with 8 warps and 3 stages), which only the pruning keeps where they fit.
_GRID = [(m, n, w, 2) for m in (64, 128) for n in (32, 64) for w in (4, 8)]
_HOPPER = [(128, 128, 8, 3), (128, 64, 8, 3)]
CONFIG_TUPLES = tuple(_GRID + _HOPPER)


def make_configs(tuples=CONFIG_TUPLES, interpret: bool | None = None) -> list:
    """triton.Config list; one tiny config under the interpreter (tests on CPU)."""
    if INTERPRET if interpret is None else interpret:
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=1, num_stages=1)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in tuples]


CONFIGS = make_configs()


def shared_bytes_estimate(kernel: str, block_m: int, block_n: int, num_stages: int,
                          head_dim: int, elt_bytes: int, jvp: bool) -> int:
    """Upper-bound estimate of a config's shared memory in bytes.

    resident tiles (loaded once per program) + num_stages x tiles loaded per loop iteration
    + dot-operand scratch of the (BLOCK_M, BLOCK_N) probability / score-gradient tiles.
    JVP mode doubles the loaded tiles (tangents ride along) and the scratch.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    copies = 2 if jvp else 1
    m_tile, n_tile, mn_tile = block_m * head_dim, block_n * head_dim, block_m * block_n
    if kernel == "fwd":        # resident Q (+TQ); per step K, V (+TK, TV); scratch P (+P S')
        resident, per_step, scratch = copies * m_tile, 2 * copies * n_tile, copies * mn_tile
    elif kernel == "bwd_kv":   # resident K, V (+TK, TV); per step Q, dO (+TQ, TdO); P^T, dS^T
        resident, per_step, scratch = 2 * copies * n_tile, 2 * copies * m_tile, 2 * copies * mn_tile
    else:                      # resident Q, dO (+TQ, TdO); per step K, V (+TK, TV); dS
        resident, per_step, scratch = 2 * copies * m_tile, 2 * copies * n_tile, copies * mn_tile
    return elt_bytes * (resident + num_stages * per_step + scratch)


def fits(kernel: str, config, *, head_dim: int, elt_bytes: int, jvp: bool, limit: int) -> bool:
    """True when `config`'s estimated shared memory is within `limit` bytes."""
    kw = config.kwargs
    need = shared_bytes_estimate(kernel, kw["BLOCK_M"], kw["BLOCK_N"], config.num_stages,
                                 head_dim, elt_bytes, jvp)
    return need <= limit


def configs_for(kernel: str, *, head_dim: int, elt_bytes: int, jvp: bool, limit: int,
                configs=None) -> list:
    """The configs of `kernel` that fit `limit`; never empty (keeps the smallest if none fit)."""
    configs = CONFIGS if configs is None else configs
    kept = [c for c in configs if fits(kernel, c, head_dim=head_dim, elt_bytes=elt_bytes,
                                       jvp=jvp, limit=limit)]
    if kept:
        return kept
    smallest = min(configs, key=lambda c: shared_bytes_estimate(
        kernel, c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_stages, head_dim, elt_bytes, jvp))
    return [smallest]


def device_shared_limit(device) -> int:
    """Opt-in shared memory per block of a CUDA device (bytes)."""
    import torch

    props = torch.cuda.get_device_properties(device)
    limit = getattr(props, "shared_memory_per_block_optin", 0)
    return int(limit) or SHARED_LIMITS.get(props.major * 10 + props.minor, 101376)


def pruner(kernel: str):
    """An ``early_config_prune`` for triton.autotune: keeps the configs that fit the device of
    the kernel's first tensor argument at this call's HEAD_DIM, dtype and JVP flag."""
    def early_config_prune(configs, named_args, **kwargs):
        if INTERPRET:
            return configs
        q = named_args["Q"]
        return configs_for(kernel, head_dim=int(kwargs["HEAD_DIM"]), elt_bytes=q.element_size(),
                           jvp=bool(kwargs["JVP"]), limit=device_shared_limit(q.device),
                           configs=configs)
    early_config_prune.__name__ = f"early_config_prune_{kernel}"
    return early_config_prune

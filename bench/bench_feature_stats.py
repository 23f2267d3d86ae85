"""Feature-statistics ops vs the paper's eager pipeline, the best pure-torch formulation, and a
read-only pass (z.sum(), the memory-bandwidth floor), on the same input in the same run.

Run: PYTHONPATH=$PWD python -m pytest bench/bench_feature_stats.py --benchmark-only -q
"""
from __future__ import annotations

import math

import pytest
import torch

import fastvit_analysis as fa
from fastvit_analysis.ops import load_extension

# name -> (shape, num_prefix_tokens, memory_format)
SHAPES = {
    "(64,256,32,32)": ((64, 256, 32, 32), 0, torch.contiguous_format),
    "(64,256,32,32) channels_last": ((64, 256, 32, 32), 0, torch.channels_last),
    "(64,512,16,16)": ((64, 512, 16, 16), 0, torch.contiguous_format),
    "(16,64,56,56)": ((16, 64, 56, 56), 0, torch.contiguous_format),
    "tokens (64,197,384)": ((64, 197, 384), 1, None),
}
ROUNDS = dict(rounds=40, iterations=1, warmup_rounds=3)  # millisecond ops: a median over few rounds is noise
SLOW_ROUNDS = dict(rounds=3, iterations=1, warmup_rounds=1)  # the paper's FFT pipeline

_inputs: dict = {}


def make_input(name: str) -> tuple[torch.Tensor, int]:
    if name not in _inputs:
        _inputs.clear()  # keep one large input alive at a time
        shape, prefix, memory_format = SHAPES[name]
        z = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        if memory_format is not None:
            z = z.contiguous(memory_format=memory_format)
        _inputs[name] = (z, prefix)
    return _inputs[name]


def as_maps_copy(z: torch.Tensor, prefix: int) -> torch.Tensor:
    """The paper's rearrange 'b (h w) c -> b c h w' (a copy), after dropping prefix tokens."""
    if z.dim() == 4:
        return z
    b, tokens, c = z.shape
    n = math.isqrt(tokens - prefix)
    return z[:, prefix:].transpose(1, 2).reshape(b, c, n, n)


def paper_relative_log_amplitude(z: torch.Tensor, prefix: int) -> torch.Tensor:
    """how-do-vits-work fourier_analysis: fft2 -> abs -> log -> roll -> mean -> diag[n/2:] - [0]."""
    maps = as_maps_copy(z, prefix)
    _, _, h, w = maps.shape
    f = torch.log(torch.fft.fft2(maps).abs() + 1e-6)
    f = torch.roll(f, shifts=(int(h / 2), int(w / 2)), dims=(2, 3)).mean(dim=(0, 1))
    f = f.diag()[int(h / 2):]
    return f - f[0]


def torch_variance(z: torch.Tensor, prefix: int) -> torch.Tensor:
    if z.dim() == 3:
        return z[:, prefix:].var(dim=1).mean()
    return z.var(dim=(2, 3)).mean()


def _require_extension():
    if not load_extension():
        pytest.skip("fastvit_analysis extension unavailable")


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("method", ["paper_fft2_pipeline", "best_pure_torch", "compiled_op", "read_floor_sum"])
def test_log_amplitude(benchmark, name, method):
    z, prefix = make_input(name)
    benchmark.group = f"log_amplitude {name}"
    benchmark.extra_info["shape"] = list(z.shape)
    if method == "paper_fft2_pipeline":
        benchmark.extra_info["reference"] = True
        benchmark.pedantic(paper_relative_log_amplitude, (z, prefix), **SLOW_ROUNDS)
        return
    if method == "best_pure_torch":
        # the eager backend: one (batched) GEMM of the maps with the [n*n, 2K] diagonal-DFT matrix
        fn = lambda: fa.relative_log_amplitude(z, prefix, backend="eager")  # noqa: E731
    elif method == "compiled_op":
        _require_extension()
        fn = lambda: fa.relative_log_amplitude(z, prefix, backend="compiled")  # noqa: E731
    else:
        fn = z.sum
    benchmark.pedantic(fn, **ROUNDS)


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("method", ["torch_var", "compiled_op", "read_floor_sum"])
def test_variance(benchmark, name, method):
    z, prefix = make_input(name)
    benchmark.group = f"variance {name}"
    benchmark.extra_info["shape"] = list(z.shape)
    if method == "torch_var":
        benchmark.extra_info["reference"] = True
        fn = lambda: torch_variance(z, prefix)  # noqa: E731
    elif method == "compiled_op":
        _require_extension()
        fn = lambda: fa.feature_map_variance(z, prefix, backend="compiled")  # noqa: E731
    else:
        fn = z.sum
    benchmark.pedantic(fn, **ROUNDS)

"""Benchmarks of fused_attention: HVPs through a patched ViT vs SDPA's math backend.

CPU (runs here): forward-over-reverse HVP (torch.func.jvp of torch.func.grad, what the curvature
code does) through timm's vit_tiny_patch16_224 at 32x32 with patch 4 (N = 65) and patch 2
(N = 257), fused (patched) vs the math backend.  Peak memory of each HVP is measured in a fresh
subprocess (resident-set growth during the HVP, sampled) and reported in ``extra_info``.

GPU (``@pytest.mark.gpu``, skipped without CUDA): forward and backward TFLOP/s vs SDPA flash at
N in {197, 1024, 4096}, D = 64, fp16/bf16; HVP through ViT-B/16 at N = 1024 / 4096: time and
peak memory vs the math backend.

Run: PYTHONPATH=$PWD python -m pytest bench/bench_attention.py --benchmark-only -q
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

ROUNDS = dict(rounds=3, iterations=1, warmup_rounds=1)


def _vit(name: str, device: str = "cpu", **kwargs):
    import timm
    return timm.create_model(name, pretrained=False, **kwargs).to(device).eval()


def _hvp_fn(model, batch: int, image: int, device: str = "cpu", dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, image, image, generator=gen).to(device, dtype)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    params = {n: p.detach() for n, p in model.named_parameters()}
    tangents = {n: torch.randn(p.shape, generator=gen).to(device, p.dtype) for n, p in params.items()}

    def loss(p):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x,)).float(), y)

    def hvp():
        return jvp(grad(loss), (params,), (tangents,))[1]
    return hvp


def _run_hvp(impl: str, model, hvp):
    from fastvit_analysis.attention.patch import attention_patched
    if impl == "fused":
        with attention_patched(model):
            return hvp()
    with sdpa_kernel(SDPBackend.MATH):
        return hvp()


def _cpu_config(patch: int):
    return dict(name="vit_tiny_patch16_224", img_size=32, patch_size=patch, num_classes=10)


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _probe_peak_rss_mib(impl: str, patch: int, batch: int) -> float:
    """In this process: peak growth (MiB) of the resident set during one HVP, sampled every
    0.5 ms by a thread (ru_maxrss is unusable: import-time transients can exceed the HVP)."""
    import threading
    torch.set_num_threads(1)
    cfg = _cpu_config(patch)
    model = _vit(cfg.pop("name"), **cfg)
    hvp = _hvp_fn(model, batch, 32)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    base = _current_rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _current_rss_bytes())
            done.wait(0.0005)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _run_hvp(impl, model, hvp)
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _current_rss_bytes())
    return (peak[0] - base) / 2 ** 20


def _measure_peak_rss_mb(impl: str, patch: int, batch: int) -> float:
    """Peak resident-memory growth (MiB) of one HVP, measured in a fresh interpreter."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), impl, str(patch), str(batch)],
                         capture_output=True, text=True, env=env, timeout=600, cwd=root)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("PEAK_RSS_MIB ")]
    if out.returncode != 0 or not lines:
        return float("nan")
    return float(lines[-1].split()[1])


@pytest.mark.parametrize("patch", [4, 2])
@pytest.mark.parametrize("impl", ["math", "fused"])
def test_hvp_vit_tiny_cpu(benchmark, impl, patch):
    batch = 4 if patch == 4 else 2
    cfg = _cpu_config(patch)
    model = _vit(cfg.pop("name"), **cfg)
    tokens = (32 // patch) ** 2 + 1
    hvp = _hvp_fn(model, batch, 32)
    benchmark.group = f"HVP vit_tiny 32px patch{patch} (N={tokens}, B={batch}) cpu"
    benchmark.extra_info["reference"] = impl == "math"
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["tokens"] = tokens
    benchmark.extra_info["peak_rss_growth_mib"] = _measure_peak_rss_mb(impl, patch, batch)
    benchmark.pedantic(lambda: _run_hvp(impl, model, hvp), **ROUNDS)


@pytest.mark.parametrize("n", [197, 1024])
@pytest.mark.parametrize("impl", ["math", "fused"])
def test_attention_forward_cpu(benchmark, impl, n):
    """The attention op alone on CPU (composite streaming path vs math SDPA), B=1, H=3, D=64."""
    from fastvit_analysis.attention.fused import fused_attention
    from fastvit_analysis.attention.reference import math_attention
    q, k, v = (torch.randn(1, 3, n, 64) for _ in range(3))
    fn = fused_attention if impl == "fused" else math_attention
    benchmark.group = f"attention forward cpu N={n} D=64"
    benchmark.extra_info["reference"] = impl == "math"
    benchmark.pedantic(lambda: fn(q, k, v), **ROUNDS)


# ---------------------------------------------------------------------------- GPU
def _attention_flops(batch, heads, n, d, mode):
    fwd = 4 * batch * heads * n * n * d
    return fwd if mode == "fwd" else 2.5 * fwd  # backward ~ 2.5x forward (5 matmuls vs 2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("n", [197, 1024, 4096])
@pytest.mark.parametrize("mode", ["fwd", "bwd"])
@pytest.mark.parametrize("impl", ["sdpa_flash", "fused"])
def test_attention_tflops_gpu(benchmark, impl, mode, n, dtype):
    import torch.nn.functional as F

    from fastvit_analysis.attention.fused import fused_attention
    batch, heads, d = max(1, 16384 // n), 12, 64
    q, k, v = (torch.randn(batch, heads, n, d, device="cuda", dtype=dtype, requires_grad=True)
               for _ in range(3))
    if impl == "fused":
        attend = lambda: fused_attention(q, k, v)  # noqa: E731
    else:
        def attend():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v)
    grad_out = torch.randn(batch, heads, n, d, device="cuda", dtype=dtype)
    if mode == "fwd":
        def run():
            with torch.no_grad():
                attend()
            torch.cuda.synchronize()
    else:
        out = attend()

        def run():
            torch.autograd.grad(out, (q, k, v), grad_out, retain_graph=True)
            torch.cuda.synchronize()
    benchmark.group = f"attention {mode} cuda N={n} D=64 {str(dtype)[6:]}"
    benchmark.extra_info["reference"] = impl == "sdpa_flash"
    result = benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=3)
    del result
    flops = _attention_flops(batch, heads, n, d, mode)
    benchmark.extra_info["tflops"] = flops / benchmark.stats.stats.median / 1e12


@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1024, 4096])
@pytest.mark.parametrize("impl", ["math", "fused"])
def test_hvp_vit_base_gpu(benchmark, impl, tokens):
    side = int(tokens ** 0.5) * 16
    model = _vit("vit_base_patch16_224", device="cuda", img_size=side, num_classes=10)
    hvp = _hvp_fn(model, 1, side, device="cuda")
    benchmark.group = f"HVP vit_base/16 N={tokens + 1} B=1 cuda"
    benchmark.extra_info["reference"] = impl == "math"
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    try:
        _run_hvp(impl, model, hvp)
    except torch.OutOfMemoryError:
        benchmark.extra_info["peak_memory_gib"] = "OOM"
        pytest.skip(f"{impl} HVP ran out of GPU memory at N={tokens + 1}")
    torch.cuda.synchronize()
    benchmark.extra_info["peak_memory_gib"] = (torch.cuda.max_memory_allocated() - base) / 2 ** 30

    def run():
        _run_hvp(impl, model, hvp)
        torch.cuda.synchronize()
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)


if __name__ == "__main__":  # the memory probe's subprocess: IMPL PATCH BATCH
    print("PEAK_RSS_MIB", _probe_peak_rss_mib(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))

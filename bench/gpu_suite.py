"""The GPU suite: one command, <= 8 min on one H100/H200, writes bench/results/gpu_suite-<device>.json.

    python -m bench.gpu_suite                 # or: fastvit-analysis selfcheck --bench
    python -m bench.gpu_suite --tiny --device cpu --out /tmp/gpu_suite.json   # code paths only

Sections (each under its own time cap, so the whole run cannot pass the budget; an entry that
would start after its section's cap is recorded as skipped):
  attention       fused fwd / bwd / JVP TFLOP/s vs SDPA flash, cuDNN and math; N = 197, 1024, 4096;
                  D = 64; fp16 / bf16
  hvp_vit         HVP through ViT-B/16 at N = 197 and 1024: time and peak memory, patched vs math SDPA
  hvp_per_vector  HVP (and gradient) time per vector, ResNet-50 and ViT-B/16, batch 64, 1/8/32 per pass
  max_eigen       max_eigenvalue_spectrum batched (8 mini-batches per pass) vs per-mini-batch loop
  feature_stats   diag_log_amplitude / feature_moments vs torch.fft / var_mean and the copy-bandwidth floor
  landscape       loss-landscape points per pass 1 vs 4
Every entry has "ratio": eager (or reference) time / our time, > 1 means ours is faster.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"
# Seconds per section; they sum to 450 s (7.5 min), leaving room for start-up and model builds.
CAPS = {"attention": 120, "hvp_vit": 80, "hvp_per_vector": 100, "max_eigen": 60, "feature_stats": 40,
        "landscape": 50}


class Section:
    """Collects a section's entries; `.open()` is False once the section's time cap has passed."""

    def __init__(self, name: str, cap_s: float):
        self.name, self.cap_s, self.start = name, cap_s, time.perf_counter()
        self.entries: list[dict] = []

    def open(self) -> bool:
        return time.perf_counter() - self.start < self.cap_s

    def add(self, **entry) -> None:
        self.entries.append(entry)

    def run(self, label: str, fn: Callable[[], dict]) -> None:
        if not self.open():
            self.add(case=label, skipped=f"time cap {self.cap_s:.0f} s reached")
            return
        try:
            self.add(case=label, **fn())
        except Exception as exc:  # one failing case must not lose the rest of the suite
            text = str(exc).strip().splitlines()
            self.add(case=label, error=f"{type(exc).__name__}: {text[0][:200] if text else ''}")


def timed(fn: Callable[[], object], device: torch.device, *, reps: int = 10, warmup: int = 2) -> float:
    """Median seconds of fn() (CUDA-synchronised)."""
    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def peak_memory(device: torch.device):
    """Yields a dict whose "peak_mib" is filled on exit (CUDA only; None on CPU)."""
    box = {"peak_mib": None}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    yield box
    if device.type == "cuda":
        torch.cuda.synchronize()
        box["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20


def _ratio(ref: float | None, ours: float | None) -> float | None:
    return None if not ref or not ours else ref / ours


# ----------------------------------------------------------------------------- attention
def section_attention(sec: Section, device: torch.device, tiny: bool) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from fastvit_analysis.attention import fused_attention

    backend = "triton" if device.type == "cuda" else "eager"
    sizes = [(2, 2, 17)] if tiny else [(32, 12, 197), (8, 12, 1024), (2, 12, 4096)]
    dtypes = [torch.float32] if tiny else [torch.float16, torch.bfloat16]
    head_dim, reps = (16, 2) if tiny else (64, 10)
    sdpa = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
    for (b, h, n) in sizes:
        for dtype in dtypes:
            q, k, v = (torch.randn(b, h, n, head_dim, device=device, dtype=dtype, requires_grad=True)
                       for _ in range(3))
            go = torch.randn_like(q)
            tangents = tuple(torch.randn_like(t) for t in (q, k, v))
            fwd_flop = 4.0 * b * h * n * n * head_dim
            flops = {"fwd": fwd_flop, "bwd": 2.5 * fwd_flop, "jvp": 2.0 * fwd_flop}  # nominal counts

            def ours(mode):
                f = lambda q, k, v: fused_attention(q, k, v, backend=backend)  # noqa: E731
                return _attention_step(f, mode, q, k, v, go, tangents)

            def theirs(kind, mode):
                def f(q, k, v):
                    with sdpa_kernel(sdpa[kind]):
                        return F.scaled_dot_product_attention(q, k, v)
                return _attention_step(f, mode, q, k, v, go, tangents)

            for mode in ("fwd", "bwd", "jvp"):
                label = f"{mode} B={b} H={h} N={n} D={head_dim} {str(dtype)[6:]}"

                def measure(mode=mode):
                    t_ours = timed(ours(mode), device, reps=reps)
                    entry = {"ours_s": t_ours, "ours_tflops": flops[mode] / t_ours / 1e12}
                    # SDPA's fused kernels have no forward-mode AD: JVP compares with math only
                    for kind in (("math",) if mode == "jvp" else ("flash", "cudnn", "math")):
                        try:
                            t = timed(theirs(kind, mode), device, reps=reps)
                            entry[f"{kind}_s"], entry[f"{kind}_tflops"] = t, flops[mode] / t / 1e12
                        except Exception as exc:  # backend not available for this dtype/device
                            entry[f"{kind}_s"] = None
                            entry[f"{kind}_error"] = type(exc).__name__
                    entry["ratio_vs_math"] = _ratio(entry.get("math_s"), t_ours)
                    entry["ratio_vs_flash"] = _ratio(entry.get("flash_s"), t_ours)
                    entry["ratio"] = entry["ratio_vs_math"]
                    return entry
                sec.run(label, measure)


def _attention_step(f, mode, q, k, v, go, tangents):
    if mode == "fwd":
        return lambda: f(q, k, v)
    if mode == "bwd":
        def step():
            out = f(q, k, v)
            torch.autograd.grad(out, (q, k, v), go)
        return step
    primals = (q.detach(), k.detach(), v.detach())
    return lambda: torch.func.jvp(f, primals, tangents)


# ----------------------------------------------------------------------------- HVP through models
def _vit(tiny: bool, img: int, device):
    import timm

    if tiny:
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=8,
                                  embed_dim=32, depth=1, num_heads=2, num_classes=4)
    else:
        model = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=img, num_classes=1000)
    return model.to(device).eval()


def _resnet(tiny: bool, device):
    if tiny:  # the code path only: a two-layer conv net stands in for ResNet-50
        nn = torch.nn
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4)).to(device).eval()
    import timm

    return timm.create_model("resnet50", pretrained=False).to(device).eval()


def _hvp_fn(model, x, y, vectors_per_pass: int = 1):
    """A closure that computes `vectors_per_pass` HVPs (forward-over-reverse, vmapped)."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    vecs = {n: torch.randn(vectors_per_pass, *p.shape, device=p.device, dtype=p.dtype) for n, p in params.items()}

    def loss(p):
        return F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

    def one(v):
        return torch.func.jvp(torch.func.grad(loss), (params,), (v,))[1]
    if vectors_per_pass == 1:
        return lambda: one({n: t[0] for n, t in vecs.items()})
    return lambda: torch.func.vmap(one)(vecs)


def _grad_fn(model, x, y):
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(p):
        return F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)
    return lambda: torch.func.grad(loss)(params)


def section_hvp_vit(sec: Section, device: torch.device, tiny: bool) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from fastvit_analysis.attention import attention_patched

    cases = [(16, 2)] if tiny else [(224, 8), (512, 2)]  # N = (img/16)^2 + 1: 197 and 1025
    dtype = torch.float32
    for img, batch in cases:
        model = _vit(tiny, img, device).to(dtype)
        x = torch.randn(batch, 3, img, img, device=device, dtype=dtype)
        y = torch.randint(0, 4 if tiny else 1000, (batch,), device=device)
        tokens = model.patch_embed.num_patches + 1

        def measure(model=model, x=x, y=y):
            with peak_memory(device) as mem_math, sdpa_kernel(SDPBackend.MATH):
                t_math = timed(_hvp_fn(model, x, y), device, reps=1 if tiny else 3, warmup=1)
            with attention_patched(model), peak_memory(device) as mem_ours:
                t_ours = timed(_hvp_fn(model, x, y), device, reps=1 if tiny else 3, warmup=1)
            return {"tokens": tokens, "batch": x.shape[0], "ours_s": t_ours, "math_s": t_math,
                    "ours_peak_mib": mem_ours["peak_mib"], "math_peak_mib": mem_math["peak_mib"],
                    "ratio": _ratio(t_math, t_ours),
                    "memory_ratio": _ratio(mem_math["peak_mib"], mem_ours["peak_mib"])}
        sec.run(f"ViT-B/16 HVP N={tokens} batch={batch} fp32", measure)


def section_hvp_per_vector(sec: Section, device: torch.device, tiny: bool) -> None:
    from fastvit_analysis.attention import attention_patched

    batch, img = (2, 16) if tiny else (64, 224)
    counts = (1, 2) if tiny else (1, 8, 32)
    for name in ("resnet50", "vit_b16"):
        model = _resnet(tiny, device) if name == "resnet50" else _vit(tiny, img, device)
        x = torch.randn(batch, 3, img, img, device=device)
        y = torch.randint(0, 4 if tiny else 1000, (batch,), device=device)
        patch = attention_patched(model) if name == "vit_b16" else contextlib.nullcontext()
        with patch:
            t_grad = None

            def grad_time():
                nonlocal t_grad
                t_grad = timed(_grad_fn(model, x, y), device, reps=1 if tiny else 3, warmup=1)
                return {"grad_s": t_grad}
            sec.run(f"{name} gradient batch={batch}", grad_time)
            for k in counts:
                def measure(k=k):
                    t = timed(_hvp_fn(model, x, y, k), device, reps=1 if tiny else 2, warmup=1)
                    return {"vectors_per_pass": k, "pass_s": t, "per_vector_s": t / k,
                            "per_vector_over_grad": (t / k) / t_grad if t_grad else None,
                            "ratio": _ratio(t_grad, t / k)}
                sec.run(f"{name} HVP batch={batch} vectors/pass={k}", measure)


def section_max_eigen(sec: Section, device: torch.device, tiny: bool) -> None:
    from fastvit_analysis import max_eigenvalue_spectrum

    torch.manual_seed(0)
    width, batches, bs = (4, 2, 2) if tiny else (256, 16, 32)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, width), torch.nn.GELU(),
                                torch.nn.Linear(width, 10)).to(device)
    x = torch.randn(batches * bs, 3, 8, 8, device=device)
    y = torch.randint(0, 10, (batches * bs,), device=device)
    kwargs = dict(batch_size=bs, num_batches=batches, top_k=1, max_hvp=4 if tiny else 60, progress=False,
                  resume=False)

    def run(per_pass):
        return lambda: max_eigenvalue_spectrum(model, torch.nn.CrossEntropyLoss(), (x, y),
                                               per_pass=per_pass, **kwargs)

    def measure():
        t_batched = timed(run(min(8, batches)), device, reps=1, warmup=1)
        t_loop = timed(run(1), device, reps=1, warmup=0)
        return {"mini_batches": batches, "batched_s": t_batched, "loop_s": t_loop,
                "ratio": _ratio(t_loop, t_batched), "target": ">= 3x"}
    sec.run(f"MLP width={width} {batches} mini-batches of {bs}", measure)


def section_feature_stats(sec: Section, device: torch.device, tiny: bool) -> None:
    from fastvit_analysis.ops import diag_log_amplitude, feature_moments

    shapes = [(2, 3, 8, 8)] if tiny else [(64, 768, 14, 14), (64, 256, 56, 56)]
    for shape in shapes:
        for dtype in ((torch.float32,) if tiny else (torch.float32, torch.float16)):
            z = torch.randn(shape, device=device, dtype=dtype)
            n = shape[-1]
            idx = torch.arange((n + 1) // 2, device=device)

            def fft_ref():
                spec = torch.fft.fft2(z.float())
                return torch.log(spec[..., idx, idx].abs() + 1e-6).mean(dim=(0, 1))

            def measure():
                reps = 2 if tiny else 20
                t_copy = timed(lambda: z.clone(), device, reps=reps)
                bytes_read = z.numel() * z.element_size()
                floor = t_copy / 2  # a copy reads and writes: half its time is one read
                t_ours = timed(lambda: diag_log_amplitude(z), device, reps=reps)
                t_fft = timed(fft_ref, device, reps=reps)
                t_mom = timed(lambda: feature_moments(z), device, reps=reps)
                t_var = timed(lambda: torch.var_mean(z.float(), dim=(2, 3)), device, reps=reps)
                return {"bytes": bytes_read, "read_floor_s": floor, "log_amp_s": t_ours, "fft_s": t_fft,
                        "moments_s": t_mom, "var_mean_s": t_var, "ratio": _ratio(t_fft, t_ours),
                        "moments_ratio": _ratio(t_var, t_mom), "log_amp_over_floor": t_ours / floor}
            sec.run(f"diag_log_amplitude {'x'.join(map(str, shape))} {str(dtype)[6:]}", measure)


def section_landscape(sec: Section, device: torch.device, tiny: bool) -> None:
    from fastvit_analysis import loss_landscape

    model = _resnet(True, device) if tiny else _resnet(False, device)
    batch, img, steps = (2, 8, 4) if tiny else (32, 64, 8)
    x = torch.randn(batch, 3, img, img, device=device)
    y = torch.randint(0, 4 if tiny else 1000, (batch,), device=device)

    def run(per_pass):
        return lambda: loss_landscape(model, torch.nn.CrossEntropyLoss(), (x, y), steps=steps, dims=1,
                                      per_pass=per_pass, progress=False, resume=False)

    def measure():
        t1 = timed(run(1), device, reps=1, warmup=1)
        t4 = timed(run(4), device, reps=1, warmup=1)
        return {"points": steps, "one_per_pass_s": t1, "four_per_pass_s": t4, "ratio": _ratio(t1, t4)}
    sec.run(f"resnet50 {steps}-point line batch={batch}", measure)


SECTIONS = {"attention": section_attention, "hvp_vit": section_hvp_vit,
            "hvp_per_vector": section_hvp_per_vector, "max_eigen": section_max_eigen,
            "feature_stats": section_feature_stats, "landscape": section_landscape}


def device_slug(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu{torch.get_num_threads()}"
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def run_suite(*, device: str | None = None, tiny: bool = False, sections=None, out: str | None = None,
              caps: dict | None = None) -> dict:
    """Run the sections and write the JSON; returns the result dict."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA device is visible")
    caps = {**CAPS, **(caps or {})}
    names = list(sections or SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ValueError(f"sections: unknown {unknown}; expected some of {list(SECTIONS)}")
    start = time.perf_counter()
    result = {"suite": "gpu_suite", "device": device_slug(dev), "tiny": tiny,
              "torch": torch.__version__, "python": platform.python_version(), "sections": {}}
    for name in names:
        sec = Section(name, caps[name])
        SECTIONS[name](sec, dev, tiny)
        result["sections"][name] = {"cap_s": caps[name], "seconds": time.perf_counter() - sec.start,
                                    "entries": sec.entries}
        print(f"gpu_suite: {name} done in {result['sections'][name]['seconds']:.0f} s "
              f"({len(sec.entries)} entries)", flush=True)
    result["seconds"] = time.perf_counter() - start
    path = Path(out) if out else RESULTS / f"gpu_suite-{result['device']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2,
                               default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))
    print(f"gpu_suite: wrote {path} in {result['seconds']:.0f} s", flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default when visible) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: runs every code path in seconds")
    parser.add_argument("--sections", nargs="+", default=None, choices=list(SECTIONS))
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/gpu_suite-<device>.json)")
    args = parser.parse_args(argv)
    run_suite(device=args.device, tiny=args.tiny, sections=args.sections, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

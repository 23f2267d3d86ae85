"""Curvature benchmarks: HVP cost, top-5 eigenvalues vs PyHessian, batched per-mini-batch spectra.

Sizes default to what finishes in a few minutes on 2 shared CPU cores and are recorded in each
benchmark's extra_info; FASTVIT_BENCH_FULL=1 uses the issue's sizes (batch 64, full-width ResNet-18).
On an oversubscribed machine OpenMP's spinning makes 2 threads far slower than 1:
FASTVIT_BENCH_THREADS=1 sets the intra-op thread count (recorded as extra_info["threads"]).

    PYTHONPATH=$PWD python -m pytest bench/bench_curvature.py --benchmark-only -q
"""
from __future__ import annotations

import os
import sys

import pytest
import timm
import torch
from torch import nn

from fastvit_analysis import HessianOperator, hessian_spectrum, max_eigenvalue_spectrum

FULL = os.environ.get("FASTVIT_BENCH_FULL", "0") == "1"
ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
CE = nn.CrossEntropyLoss()
K = 8
if not ON_GPU and os.environ.get("FASTVIT_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["FASTVIT_BENCH_THREADS"]))  # vectors per batched HVP pass


def cifar_resnet18(width: int = 64) -> nn.Module:
    """timm resnet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool); width 64 is the standard one.

    Stage widths are (1, 2, 4, 8) x width; timm keeps the stem at 64 channels for the normal stem."""
    torch.manual_seed(0)
    model = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [2, 2, 2, 2], num_classes=10,
                                      stem_width=width, channels=tuple(width * m for m in (1, 2, 4, 8)))
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model.to(DEVICE).eval()


def vit_ti4() -> nn.Module:
    """ViT-Ti/4 at 32x32 (64 patches + cls), attention on the math path (fused SDPA has no forward AD)."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, num_classes=10)
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return model.to(DEVICE).eval()


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).to(DEVICE).eval()


def cifar_batch(n: int, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, size, size, generator=g).to(DEVICE), torch.randint(10, (n,), generator=g).to(DEVICE))


def _sync():
    if ON_GPU:
        torch.cuda.synchronize()


def pedantic(benchmark, fn, rounds=2):
    def run():
        out = fn()
        _sync()
        return out
    return benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)


# --- (a) HVP cost --------------------------------------------------------------------------------

HVP_BATCH = 64 if FULL or ON_GPU else 4
HVP_MODELS = {"resnet18_cifar": cifar_resnet18, "vit_ti4_32": vit_ti4}


def _eager_double_backward(model, data, vectors):
    """PyHessian's way: first-order graph with create_graph=True, then one double backward per vector."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = CE(model(data[0]), data[1])
    grads = torch.autograd.grad(loss, params, create_graph=True)
    out = []
    for v in vectors:
        chunks = [c.view_as(p) for c, p in zip(v.split([p.numel() for p in params]), params)]
        hv = torch.autograd.grad(grads, params, grad_outputs=chunks, retain_graph=True)
        out.append(torch.cat([h.reshape(-1) for h in hv]))
    return torch.stack(out)


# Issue 15.6, where the HVP cost goes (torch.profiler, self CPU time of one call, 1 thread, machine
# loaded ~16 on 2 cores so single runs; CIFAR ResNet-18 width 16, batch 16; script: profile one
# gradient step and H.matmat(v [1, P]) in each mode with torch.profiler.profile(activities=[CPU])):
#   gradient                       0.97 s: convolution_backward 0.50 s (21 calls), conv forward 0.27 s
#   forward-over-reverse, 1 vector 1.52 s (1.6x): convolution_backward 124 calls 0.67 s self, conv
#       forward 63 calls 0.21 s (primal + tangent), elementwise mul/add/sub 0.40 s (BN/ReLU tangent rules)
#   double-backward, graph kept    0.83 s per product (0.86x), graph build excluded: conv forward 61
#       calls 0.27 s (conv's double backward is expressed as convolutions), convolution_backward 21 calls
# A Hessian-vector product is at least one extra pass of every convolution in both directions on top
# of a gradient; the forward-over-reverse overhead above 2x is the tangent elementwise work (~26%).
# Not done: ViT-Ti/4 profile and a change that brings the benchmarked ratio to <= 2.5x (see report).
@pytest.mark.parametrize("name", list(HVP_MODELS))
@pytest.mark.parametrize("member", ["gradient", "eager_double_backward", "matmat", "matmat_reverse_over_reverse",
                                    "matmat_double_backward"])
def test_hvp_cost(benchmark, name, member):
    model = HVP_MODELS[name]()
    data = cifar_batch(HVP_BATCH)
    benchmark.group = f"hvp cost {name} batch {HVP_BATCH} (k={K} vectors)"
    benchmark.extra_info.update({"model": name, "batch": HVP_BATCH, "vectors": K if member != "gradient" else 1,
                                 "num_params": sum(p.numel() for p in model.parameters()),
                                 "threads": torch.get_num_threads()})
    if member == "gradient":
        benchmark.extra_info["reference"] = True

        def fn():
            model.zero_grad(set_to_none=True)
            CE(model(data[0]), data[1]).backward()
        pedantic(benchmark, fn)
        model.zero_grad(set_to_none=True)
        return
    mode = {"matmat_reverse_over_reverse": "reverse-over-reverse",
            "matmat_double_backward": "double-backward"}.get(member, "forward-over-reverse")
    H = HessianOperator(model, CE, data, hvp_mode=mode)
    V = torch.randn(K, H.num_params, device=DEVICE)
    rounds = 3 if FULL or ON_GPU else 1
    benchmark.extra_info["vectors_per_pass"] = H.per_pass if member.startswith("matmat") else 1
    if member == "matmat_double_backward":
        # a fresh operator per round: the timing includes building the kept first-order graph
        out = pedantic(benchmark, lambda: HessianOperator(model, CE, data, hvp_mode=mode).matmat(V), rounds=rounds)
        benchmark.extra_info["vectors_per_pass"] = 1
    elif member.startswith("matmat"):
        out = pedantic(benchmark, lambda: H.matmat(V), rounds=rounds)
    else:
        out = pedantic(benchmark, lambda: _eager_double_backward(model, data, V), rounds=rounds)
    ref = _eager_double_backward(model, data, V[:1])
    err = float((out[0] - ref[0]).norm() / ref[0].norm())
    benchmark.extra_info["relative_difference_vs_double_backward"] = err
    assert err < 1e-3


# --- (b) top-5 eigenvalues vs PyHessian ----------------------------------------------------------

SPEC_WIDTH = 64 if FULL or ON_GPU else 8
SPEC_BATCH = 16


def _flat(vectors):
    return torch.cat([t.reshape(-1) for t in vectors])


@pytest.mark.parametrize("member", ["pyhessian", "lanczos", "lanczos_reverse_over_reverse", "lanczos_double_backward"])
def test_top5_vs_pyhessian(benchmark, member):
    model = cifar_resnet18(SPEC_WIDTH)
    data = cifar_batch(SPEC_BATCH, seed=1)
    H = HessianOperator(model, CE, data)
    benchmark.group = f"top-5 LM eigenvalues resnet18_cifar width {SPEC_WIDTH} batch {SPEC_BATCH}"
    benchmark.extra_info.update({"model": "resnet18_cifar", "width": SPEC_WIDTH, "batch": SPEC_BATCH,
                                 "num_params": H.num_params, "tol": 1e-3, "threads": torch.get_num_threads()})
    if member == "pyhessian":
        from pyhessian import hessian as PyHessian

        benchmark.extra_info["reference"] = True

        # count PyHessian's HVPs: its power iteration calls the module-level hessian_vector_product
        pyhessian_module = sys.modules["pyhessian.hessian"]
        hvp = pyhessian_module.hessian_vector_product
        calls = [0]

        def counted_hvp(*args, **kwargs):
            calls[0] += 1
            return hvp(*args, **kwargs)

        def fn():
            torch.manual_seed(0)
            calls[0] = 0
            return PyHessian(model, CE, data=data, cuda=ON_GPU).eigenvalues(top_n=5)

        pyhessian_module.hessian_vector_product = counted_hvp
        try:
            values, vectors = benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)
        finally:
            pyhessian_module.hessian_vector_product = hvp
        vecs = [_flat(v) for v in vectors]
        vecs = [v / v.norm() for v in vecs]
        residuals = [float((H.matvec(v) - lam * v).norm()) for lam, v in zip(values, vecs)]
        benchmark.extra_info.update({"eigenvalues": [float(v) for v in values], "residuals": residuals,
                                     "n_hvp": calls[0]})
    else:
        mode = {"lanczos_reverse_over_reverse": "reverse-over-reverse",
                "lanczos_double_backward": "double-backward"}.get(member, "forward-over-reverse")
        res = benchmark.pedantic(lambda: hessian_spectrum(model, CE, data, top_k=5, which="LM", tol=1e-3,
                                                          hvp_mode=mode, progress=False),
                                 rounds=1, iterations=1, warmup_rounds=0)
        benchmark.extra_info.update({"eigenvalues": res.eigenvalues.tolist(), "residuals": res.residuals.tolist(),
                                     "n_hvp": res.num_hvp, "converged": bool(res.converged.all())})
    model.zero_grad(set_to_none=True)


# --- (c) per-mini-batch spectra: batched vs a loop ------------------------------------------------

MB_COUNT, MB_SIZE = 32, 16
MB_IMAGE = 32 if FULL or ON_GPU else 16


@pytest.mark.parametrize("member", ["loop", "batched"])
def test_max_eigenvalue_spectrum_batched_vs_loop(benchmark, member):
    model = small_cnn()
    x, y = cifar_batch(MB_COUNT * MB_SIZE, size=MB_IMAGE, seed=2)
    benchmark.group = f"max_eigenvalue_spectrum {MB_COUNT} mini-batches of {MB_SIZE} small_cnn {MB_IMAGE}px"
    benchmark.extra_info.update({"model": "small_cnn", "num_params": sum(p.numel() for p in model.parameters()),
                                 "mini_batches": MB_COUNT, "batch_size": MB_SIZE, "image": MB_IMAGE, "top_k": 5,
                                 "tol": 1e-3, "threads": torch.get_num_threads()})
    if member == "loop":
        benchmark.extra_info["reference"] = True

        def fn():
            return torch.stack([
                hessian_spectrum(model, CE, (x[i * MB_SIZE:(i + 1) * MB_SIZE], y[i * MB_SIZE:(i + 1) * MB_SIZE]),
                                 top_k=5, which="LM", tol=1e-3, max_hvp=300, seed=i, progress=False).eigenvalues
                for i in range(MB_COUNT)])
        values = benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)
    else:
        res = benchmark.pedantic(lambda: max_eigenvalue_spectrum(model, CE, (x, y), batch_size=MB_SIZE, top_k=5,
                                                                 tol=1e-3, max_hvp=300, per_pass=MB_COUNT,
                                                                 progress=False),
                                 rounds=1, iterations=1, warmup_rounds=0)
        values = res.eigenvalues
        benchmark.extra_info["n_hvp_per_mini_batch"] = res.num_hvp / MB_COUNT
    benchmark.extra_info["max_eigenvalue_mean"] = float(values[:, 0].abs().mean())


# --- (d) warm vs cold starts of per-mini-batch spectra on a briefly trained model ------------------
# Issue 15.2's baseline: 39.5 HVPs per mini-batch (top-5 LM, tol 1e-3, demo_resnet, 16 mini-batches of
# 16). Both members stop at residual <= tol·|λ|max (explicit residuals), so eigenvalues agree to tol.
# Measured (2 shared CPU cores, load ~16, 1 thread; small_cnn after 60 AdamW steps, 16 px, 16x16, top-5,
# tol 1e-3): HVPs per mini-batch cold/warm 18.2/15.5 at per_pass=1 (148/117 s) and 21.0/17.0 at
# per_pass=8 (39.0/43.0 s); top eigenvalues equal to ~1e-6 relative. Warm saves 15-19% of the
# products, far from the 50% target, and is not faster at the default per_pass=8, so
# the default stays cold (warm_start=False). On the untrained test MLP warm cost more (211 vs 178).

WARM_COUNT, WARM_SIZE, WARM_IMAGE = 16, 16, 16


def _trained_small_cnn(steps: int = 60):
    """small_cnn after `steps` AdamW steps on a learnable synthetic task (labels from a random linear map)."""
    model = small_cnn().train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 3, WARM_IMAGE, WARM_IMAGE, generator=g).to(DEVICE)
    y = (x.flatten(1) @ torch.randn(x[0].numel(), 10, generator=g).to(DEVICE)).argmax(1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        i = (step * 32) % 512
        loss = CE(model(x[i:i + 32]), y[i:i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), (x[:WARM_COUNT * WARM_SIZE], y[:WARM_COUNT * WARM_SIZE])


@pytest.mark.parametrize("member", ["cold", "warm"])
@pytest.mark.parametrize("batches_per_pass", [1, 8])
def test_max_eigen_warm_vs_cold(benchmark, member, batches_per_pass):
    model, data = _trained_small_cnn()
    benchmark.group = f"max_eigen warm vs cold, trained small_cnn, {WARM_COUNT}x{WARM_SIZE}, bpp {batches_per_pass}"
    benchmark.extra_info.update({"model": "small_cnn (60 AdamW steps)", "top_k": 5, "tol": 1e-3,
                                 "batches_per_pass": batches_per_pass, "threads": torch.get_num_threads()})
    if member == "cold":
        benchmark.extra_info["reference"] = True
    res = benchmark.pedantic(lambda: max_eigenvalue_spectrum(
        model, CE, data, batch_size=WARM_SIZE, top_k=5, tol=1e-3, warm_start=member == "warm",
        per_pass=batches_per_pass, progress=False), rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info["n_hvp_per_mini_batch"] = res.num_hvp / WARM_COUNT
    benchmark.extra_info["all_converged"] = bool(res.converged.all())
    benchmark.extra_info["top_eigenvalue_mean"] = float(res.eigenvalues[:, 0].abs().mean())


# --- (e) one Hessian over 1 vs 2 gloo ranks (CPU): the same products, each rank on half the data ----
# Each rank runs with FASTVIT_BENCH_THREADS threads; on a 2-core box 2 ranks x 1 thread vs 1 x 2.

DIST_SCRIPT = """
import sys, time, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
import bench_curvature as b
from fastvit_analysis import HessianOperator
from fastvit_analysis.curvature.sharding import shard_batches
if int(__import__("os").environ.get("WORLD_SIZE", "1")) > 1:
    dist.init_process_group("gloo")
model, data = b.small_cnn(), b.cifar_batch(256, size=16, seed=3)
batches = [(data[0][i:i + 64], data[1][i:i + 64]) for i in range(0, 256, 64)]
H = HessianOperator(model, b.CE, shard_batches(batches))
V = torch.randn(8, H.num_params, generator=torch.Generator().manual_seed(0))
H.matmat(V[:1])
t = time.perf_counter(); H.matmat(V); s = time.perf_counter() - t
if not dist.is_initialized() or dist.get_rank() == 0:
    print(f"SECONDS {s}")
"""


@pytest.mark.parametrize("ranks", [1, 2])
def test_distributed_hessian_1_vs_2_ranks(benchmark, ranks, tmp_path):
    import re
    import subprocess

    if ON_GPU:
        pytest.skip("CPU gloo measurement")
    script = tmp_path / "dist_hvp.py"
    script.write_text(DIST_SCRIPT)
    here = os.path.dirname(os.path.abspath(__file__))
    threads = os.environ.get("FASTVIT_BENCH_THREADS", "1")
    env = {**os.environ, "OMP_NUM_THREADS": threads, "FASTVIT_PROGRESS": "0",
           "PYTHONPATH": os.path.dirname(here) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
           if ranks > 1 else [sys.executable]) + [str(script), here]
    benchmark.group = "HessianOperator.matmat 8 vectors, small_cnn, 256 samples: 1 vs 2 gloo ranks"
    benchmark.extra_info.update({"ranks": ranks, "threads_per_rank": int(threads)})
    if ranks == 1:
        benchmark.extra_info["reference"] = True
    done = benchmark.pedantic(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900),
                              rounds=1, iterations=1, warmup_rounds=0)
    assert done.returncode == 0, done.stderr[-2000:]
    benchmark.extra_info["matmat_seconds"] = float(re.search(r"SECONDS (\S+)", done.stdout).group(1))

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
from fastvit_analysis import train as fa_train

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


# Issue 15.6, where the HVP cost goes: bench/profile_hvp.py times a gradient and an 8-vector
# HessianOperator.matmat of each hvp_mode INTERLEAVED (ratio per round to the gradient just before),
# then profiles by op. Measured 2026-12-02, 1 thread, load 5-9 on 2 cores shared by 5 sessions:
#   PYTHONPATH=$PWD python bench/profile_hvp.py --model resnet18_cifar --batch 64 --vectors 8 --rounds 2 --threads 1
#     HVP per vector / gradient: double-backward 1.91 (kept graph, its build included), reverse-over-
#     reverse 3.19, forward-over-reverse 4.79 (gradient 6.8-9.3 s; rounds of forward-over-reverse
#     varied 3.5-6.1: noise).
#   ... --model vit_ti4_32 --batch 16 --vectors 8 --rounds 1: double-backward 2.52, reverse-over-
#     reverse 1.70, forward-over-reverse 3.45.
#   Profile (ResNet-18, batch 64, self CPU by op): gradient = 20 convolutions (1.95 s) + 20
#   convolution_backward (4.94 s, two convolutions each). Forward-over-reverse, one vector: 60
#   convolutions (primal + conv(x_t, W) + conv(x, W_t)), 118 convolution_backward (the primal's 20 and
#   ~4 per layer for the tangents of grad_input and grad_weight, each a sum of two terms) and 17% in
#   elementwise tangent rules (mul/add of BatchNorm, ReLU): about 4 gradient-equivalents of
#   convolution work per vector, shared primal aside: inherent to forward-over-reverse. Kept graph
#   (double-backward): 78 convolutions + 40 convolution_backward for the build and one product; the
#   build is shared by the 8 vectors, which is why it is the fastest mode and the default of
#   HessianOperator on one batch (<= 2.5x on ResNet-18; 2.52x on ViT-Ti/4 in one noisy round).
# Not done: multi-batch HessianOperator and MiniBatchHessians (max_eigenvalue_spectrum) still use
# forward-over-reverse, 3.4-4.8x here; a kept graph over vmapped per-mini-batch parameters would
# bring them to the double-backward figure (not implemented).
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


# --- (d) fewer HVPs per mini-batch: solvers of max_eigenvalue_spectrum on trained demo models ------
# Issue 15.2. Top-5 LM, tol 1e-3, 16 mini-batches of 16 synthetic images, chunks of 4 (per_pass),
# demo_resnet / demo_vit after `fastvit_analysis.train(..., epochs=3, num_samples=2000, lr=1e-3)`.
# Members (every one stops at explicit residual <= tol·|λ|max, so eigenvalues agree to tol):
#   lanczos     the previous default: thick-restart Lanczos per chunk, run until the chunk's slowest
#               mini-batch converges, then top_k extra products for the explicit residuals (reference);
#   cold        the default now: curvature.warm.residual_eigsh from the same random vector; it keeps
#               W = H Q, so residuals are explicit at no extra product, and locks each mini-batch when
#               its own pairs pass (the rest of the chunk continues without it);
#   warm        warm_start=True: start vector = Σ of the previous chunk's Ritz vectors + the random one;
#   block_warm  the previous warm start: a block [previous Ritz vectors, random vector].
# Measured with the same code (/tmp script, 1 thread, load 3-9 on 2 cores shared by 5 sessions), HVPs
# per mini-batch (ratio to lanczos): demo_resnet lanczos 27.75, cold 20.6 (0.74), warm 20.0 (0.72),
# block_warm 30.0 (1.08); a consensus block (top-5 singular vectors of the previous chunk's 20 Ritz
# vectors) 29.3; cold with max_basis 40 (no thick restart) 20.6. The top eigenvector of one mini-batch's
# Hessian is well aligned with another's (subspace cosine 0.96-0.98), the 2nd-5th are not (0.75, 0.6,
# 0.3, <0.13; a previous mini-batch's 5 Ritz vectors hold 0.1-0.5 of the squared norm of each new one),
# so warm starts save little; the saving is in free explicit residuals and locking. demo_vit: lanczos
# 35.25, cold 22.06 (0.63), warm 21.0 (0.60). The ≤ 50% target of the issue is not reached.
# Eigenvalues of every member were certified (explicit residual <= tol·|λ|max) in that run; this
# pytest version of it was written afterwards and has not been run here.

MAXEIG_COUNT, MAXEIG_SIZE, MAXEIG_CHUNK, MAXEIG_K, MAXEIG_TOL = 16, 16, 4, 5, 1e-3


def _trained_demo(name: str):
    from fastvit_analysis.data.synthetic import SyntheticShapes

    torch.manual_seed(0)
    trained = fa_train(name, "synthetic", epochs=3, num_samples=2000, lr=1e-3, progress=False)
    x, y = SyntheticShapes("train", num_samples=MAXEIG_COUNT * MAXEIG_SIZE, seed=1).tensors()
    return trained.model.to(DEVICE).eval(), (x.to(DEVICE), y.to(DEVICE))


def _chunked_solve(model, data, member):
    """Per-mini-batch top-k of `data` in chunks, by one of the members above -> (values [n, k], counts [n])."""
    from fastvit_analysis.curvature.krylov import make_generator
    from fastvit_analysis.curvature.lanczos import (
        explicit_residuals,
        lanczos_eigsh,
        order_by,
    )
    from fastvit_analysis.curvature.max_eigen import _warm_start_vector
    from fastvit_analysis.curvature.operator import MiniBatchHessians
    from fastvit_analysis.curvature.warm import residual_eigsh

    x, y = data
    x = x.view(MAXEIG_COUNT, MAXEIG_SIZE, *x.shape[1:])
    y = y.view(MAXEIG_COUNT, MAXEIG_SIZE)
    P = sum(p.numel() for p in model.parameters())
    previous, values, counts = None, [], []
    for c in range(0, MAXEIG_COUNT, MAXEIG_CHUNK):
        idx = list(range(c, c + MAXEIG_CHUNK))
        H = MiniBatchHessians(model, CE, x[idx], y[idx])
        v0 = torch.stack([torch.randn(P, generator=make_generator(i, DEVICE), device=DEVICE) for i in idx])
        gen = make_generator(idx[0] + 7, DEVICE)
        kw = {"which": "LM", "tol": MAXEIG_TOL, "max_steps": 300, "generator": gen}
        if member == "lanczos":
            r = lanczos_eigsh(H, v0, MAXEIG_K, **kw)
            res = explicit_residuals(H, r.eigenvalues, r.eigenvectors)
            counts += [r.n_steps + MAXEIG_K] * len(idx)
        else:
            if previous is None:
                block = v0.unsqueeze(1)
            elif member == "warm":
                block = _warm_start_vector(previous, v0).unsqueeze(1)
            else:   # block_warm
                block = torch.cat([previous, v0.unsqueeze(1)], dim=1)
            r = residual_eigsh(H, block, MAXEIG_K, **kw)
            res = r.residual_estimates
            counts += r.steps_per_problem.tolist()
            if member != "cold":
                previous = r.eigenvectors
        scale = r.eigenvalues.abs().amax(dim=1, keepdim=True)
        assert bool((res.to(scale) <= 1.01 * MAXEIG_TOL * scale).all()), member   # certified
        values.append(torch.gather(r.eigenvalues, 1, order_by(r.eigenvalues, "LM")).double().cpu())
    return torch.cat(values), counts


_MAXEIG_REFERENCE: dict[str, tuple[torch.Tensor, float]] = {}


@pytest.mark.parametrize("member", ["lanczos", "cold", "warm", "block_warm"])
@pytest.mark.parametrize("name", ["demo_resnet", "demo_vit"])
def test_max_eigen_hvps_per_mini_batch(benchmark, name, member):
    model, data = _trained_demo(name)
    benchmark.group = (f"max_eigen HVPs per mini-batch, trained {name}, {MAXEIG_COUNT}x{MAXEIG_SIZE}, "
                       f"chunks of {MAXEIG_CHUNK}, top-{MAXEIG_K} LM tol {MAXEIG_TOL:g}")
    benchmark.extra_info.update({"model": f"{name} (3 epochs, 2000 synthetic)", "threads": torch.get_num_threads(),
                                 "load_1min": os.getloadavg()[0]})
    if member == "lanczos":
        benchmark.extra_info["reference"] = True
    values, counts = benchmark.pedantic(lambda: _chunked_solve(model, data, member), rounds=1, iterations=1,
                                        warmup_rounds=0)
    benchmark.extra_info["hvp_per_mini_batch"] = sum(counts) / len(counts)
    if member == "lanczos":
        _MAXEIG_REFERENCE[name] = (values, sum(counts) / len(counts))
    elif name in _MAXEIG_REFERENCE:
        ref, ref_hvp = _MAXEIG_REFERENCE[name]
        benchmark.extra_info["hvp_ratio_vs_lanczos"] = benchmark.extra_info["hvp_per_mini_batch"] / ref_hvp
        gap = float(((values - ref).abs() / ref.abs().amax(dim=1, keepdim=True)).max())
        benchmark.extra_info["max_relative_eigenvalue_difference"] = gap
        assert gap <= 10 * MAXEIG_TOL


# --- (e) one spectrum over 1 vs 2 gloo ranks (CPU): the same products, each rank on half the data ---
# Issue 15.1's scaling figure: hessian_spectrum (top-5 LM, tol 1e-3) of small_cnn over 256 samples in
# 4 batches, one process vs torchrun --nproc-per-node 2 (each rank holds half of every batch). Each
# rank runs with FASTVIT_BENCH_THREADS threads (default 1): on a 2-core box 2 ranks x 1 thread vs 1 x 1.
# extra_info: the spectrum's seconds (process start and imports excluded), n_hvp and eigenvalues,
# so the two members can be checked to give the same result; speedup_vs_reference is on the whole
# subprocess, spectrum_speedup on the spectrum alone.

DIST_SCRIPT = """
import json, os, sys, time, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
import bench_curvature as b
from fastvit_analysis import hessian_spectrum
from fastvit_analysis.curvature.sharding import shard_batches
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    dist.init_process_group("gloo")
model, data = b.small_cnn(), b.cifar_batch(256, size=16, seed=3)
batches = [(data[0][i:i + 64], data[1][i:i + 64]) for i in range(0, 256, 64)]
t = time.perf_counter()
res = hessian_spectrum(model, b.CE, shard_batches(batches), top_k=5, which="LM", tol=1e-3, progress=False)
s = time.perf_counter() - t
if not dist.is_initialized() or dist.get_rank() == 0:
    print("RESULT " + json.dumps({"seconds": s, "n_hvp": res.num_hvp, "eigenvalues": res.eigenvalues.tolist(),
                                  "world_size": dist.get_world_size() if dist.is_initialized() else 1}))
"""
_DIST_SECONDS: dict[int, float] = {}


@pytest.mark.parametrize("ranks", [1, 2])
def test_distributed_spectrum_1_vs_2_ranks(benchmark, ranks, tmp_path):
    import json
    import re
    import subprocess

    if ON_GPU:
        pytest.skip("CPU gloo measurement")
    script = tmp_path / "dist_spectrum.py"
    script.write_text(DIST_SCRIPT)
    here = os.path.dirname(os.path.abspath(__file__))
    threads = os.environ.get("FASTVIT_BENCH_THREADS", "1")
    env = {**os.environ, "OMP_NUM_THREADS": threads, "FASTVIT_PROGRESS": "0",
           "PYTHONPATH": os.path.dirname(here) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
           if ranks > 1 else [sys.executable]) + [str(script), here]
    benchmark.group = "hessian_spectrum top-5 LM, small_cnn, 256 samples: 1 vs 2 gloo ranks"
    benchmark.extra_info.update({"ranks": ranks, "threads_per_rank": int(threads), "load_1min": os.getloadavg()[0]})
    if ranks == 1:
        benchmark.extra_info["reference"] = True
    done = benchmark.pedantic(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800,
                                                     check=False),
                              rounds=1, iterations=1, warmup_rounds=0)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(re.search(r"RESULT (.+)", done.stdout).group(1))
    assert result["world_size"] == ranks
    _DIST_SECONDS[ranks] = result["seconds"]
    benchmark.extra_info.update({"spectrum_seconds": result["seconds"], "n_hvp": result["n_hvp"],
                                 "eigenvalues": result["eigenvalues"]})
    if 1 in _DIST_SECONDS and ranks != 1:
        benchmark.extra_info["spectrum_speedup"] = _DIST_SECONDS[1] / result["seconds"]

"""Issue 15.6: where a Hessian-vector product's time goes, and its cost per vector over a gradient's.

For CIFAR ResNet-18 and ViT-Ti/4 (bench_curvature's models) on one batch, times a gradient and
k-vector HessianOperator.matmat in each hvp_mode, INTERLEAVED round by round (gradient, modes...,
gradient, ...), so the per-vector ratio HVP/gradient is robust to the load of a shared machine;
prints the median ratios and, with --profile, torch.profiler's self-CPU time by op of one gradient
and one product of each mode.

    PYTHONPATH=$PWD python bench/profile_hvp.py --model resnet18_cifar --batch 64 --vectors 8 --profile
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_curvature as bc

from fastvit_analysis import HessianOperator

MODES = ("double-backward", "forward-over-reverse", "reverse-over-reverse")


def gradient_step(model, data):
    model.zero_grad(set_to_none=True)
    bc.CE(model(data[0]), data[1]).backward()
    model.zero_grad(set_to_none=True)


def product(H, V):
    # double-backward: drop the kept graph first, so the timing includes building it
    H._graphs = None
    return H.matmat(V)


def timed(fn):
    t = time.perf_counter()
    fn()
    bc._sync()
    return time.perf_counter() - t


def profile_table(fn, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(bc.HVP_MODELS), default="resnet18_cifar")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--vectors", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables by op")
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write the figures to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = bc.HVP_MODELS[args.model]()
    data = bc.cifar_batch(args.batch)
    P = sum(q.numel() for q in model.parameters())
    V = torch.randn(args.vectors, P, generator=torch.Generator().manual_seed(0)).to(bc.DEVICE)
    ops = {m: HessianOperator(model, bc.CE, data, hvp_mode=m) for m in MODES}
    ref = product(ops["double-backward"], V[:1])[0]
    for mode in args.modes:   # warm-up and agreement
        got = product(ops[mode], V[:1])[0]
        assert float((got - ref).norm() / ref.norm()) < 1e-3, mode
    gradient_step(model, data)
    times: dict[str, list[float]] = {"gradient": [], **{m: [] for m in args.modes}}
    for _ in range(args.rounds):
        for mode in args.modes:
            times["gradient"].append(timed(lambda: gradient_step(model, data)))
            times[mode].append(timed(lambda mode=mode: product(ops[mode], V)))
    # ratio per round: a product's time per vector over the gradient measured just before it
    ratios = {m: statistics.median((times[m][r] / args.vectors) / times["gradient"][r * len(args.modes) + i]
                                   for r in range(args.rounds)) for i, m in enumerate(args.modes)}
    out = {"model": args.model, "batch": args.batch, "vectors": args.vectors, "rounds": args.rounds,
           "num_params": P, "threads": torch.get_num_threads(), "load_1min": os.getloadavg()[0],
           "seconds": times, "hvp_per_vector_over_gradient": ratios}
    print(json.dumps(out, indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.profile:
        print(f"== gradient ({args.model}, batch {args.batch})")
        print(profile_table(lambda: gradient_step(model, data), args.rows), flush=True)
        for mode in args.modes:
            print(f"== {mode}, {args.vectors} vectors")
            print(profile_table(lambda mode=mode: product(ops[mode], V), args.rows), flush=True)
    return out


if __name__ == "__main__":
    main()

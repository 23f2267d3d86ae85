"""`fastvit-analysis demo`: train three small models on the embedded data and compare them like the paper.

Stages run in this process through the same code as the subcommands (so the demo's files are exactly
what `fastvit-analysis <command>` writes). Each stage gets a share of the time budget; the sizes of
the analyses (mini-batches, grid steps, samples) are chosen from a measured forward/backward time and
kept in OUT/demo_plan.json so that a re-run reuses checkpoints and finished results instead of
recomputing them.
"""
from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .main import CLIError, build_parser

# Shares of the total budget (they sum to 1 with the reserve for start-up and the report).
TRAIN_SHARE = 0.46
ANALYSIS_SHARES = {"max_eigen": 0.22, "landscape": 0.12, "robustness": 0.06, "fourier": 0.03,
                   "variance": 0.025, "cka": 0.035}
ANALYSES = ["max_eigen", "landscape", "fourier", "variance", "cka", "robustness"]
RESULT_FILE = {"max_eigen": "max_eigen.json", "landscape": "landscape.json", "fourier": "fourier.json",
               "variance": "variance.json", "cka": "cka.json", "robustness": "robustness.json",
               "train": "train.json"}
# A few CPU minutes are far from the paper's 300 epochs: a larger learning rate and no Mixup/CutMix/
# RandAugment let the small models learn the embedded data (crop + flip stay on).
DEMO_RECIPE = ["--lr", "2e-3", "--warmup-epochs", "1", "--mixup", "0", "--cutmix", "0", "--randaugment", "none",
               "--channels-last"]
MAX_EIGEN_SOLVER = {"top_k": 5, "tol": 1e-2, "max_hvp": 120}
QUICK_PLAN = {
    "train": {"epochs": 1, "num_samples": 64, "test_samples": 32, "batch_size": 32},
    "max_eigen": {"num_batches": 1, "batch_size": 4, "top_k": 1, "tol": 1e-2, "max_hvp": 4},
    "landscape": {"steps": 3, "num_samples": 16, "dims": 2},
    "fourier": {"num_samples": 16},
    "variance": {"num_samples": 16},
    "cka": {"num_samples": 16, "batch_size": 8},
    "robustness": {"num_samples": 32, "freqs": [0.1, 0.5, 0.9]},
}


@dataclass
class Stage:
    stage: str
    model: str
    budget_s: float
    seconds: float = 0.0
    status: str = "pending"
    detail: dict[str, Any] = field(default_factory=dict)


class Clock:
    """Hands out time: a stage's budget is its planned share of what is left of the total."""

    def __init__(self, total_s: float, shares: list[float]):
        self.start = time.perf_counter()
        self.total_s = total_s
        self.remaining_shares = list(shares)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def next_budget(self) -> float:
        share = self.remaining_shares.pop(0)
        left = max(0.0, self.total_s * (1 - 0.04) - self.elapsed())
        planned_left = share + sum(self.remaining_shares)
        return left * share / planned_left if planned_left > 0 else 0.0


def _parse(argv: list[str]):
    return build_parser().parse_args([str(a) for a in argv])


def _common_argv(args, model_path: Path, out: Path) -> list[str]:
    argv = ["--model", str(model_path), "--data", "synthetic", "--device", args.device, "--out", str(out),
            "--seed", str(args.seed)]
    return argv + (["--no-progress"] if args.no_progress else [])


# -------------------------------------------------------------------------------- calibration
def _best_time(fn, repeats: int = 3) -> float:
    """Smallest wall time of `repeats` calls (the machine may be shared: the minimum is the cost)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _measure(model_name_or_path: str, device, num_classes: int, *, batch_size: int = 64) -> dict[str, float]:
    """Seconds per sample of a forward pass (eval, no grad) and of a training step (forward+backward)."""
    import torch

    from . import _common as common

    # channels-last like the demo's training (DEMO_RECIPE); convolutions are about 2x faster on CPU
    model = common.load_model(model_name_or_path, num_classes=num_classes, device=device)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_size,), device=device)

    def forward():
        with torch.no_grad():
            model(x)

    def step():
        torch.nn.functional.cross_entropy(model(x), y).backward()

    forward()
    fwd = _best_time(forward) / batch_size
    model.train()
    step()
    fwd_bwd = _best_time(step, 2) / batch_size
    return {"forward_s_per_sample": fwd, "train_s_per_sample": fwd_bwd}


def _clamp(value: float, lo: int, hi: int) -> int:
    return int(max(lo, min(hi, math.floor(value))))


def _plan_training(budget_s: float, cost: dict[str, float], train_size: int) -> dict[str, Any]:
    """Epochs and samples so that training (plus a test pass per epoch) fits `budget_s`."""
    test_samples = 500
    per_epoch_eval = test_samples * cost["forward_s_per_sample"]
    per_sample = cost["train_s_per_sample"] * 1.3  # optimizer step, augmentation, data
    epochs = _clamp(budget_s / (train_size * per_sample + per_epoch_eval), 1, 60)
    num_samples = None
    if epochs < 6:  # too few epochs to learn: fewer samples, more passes
        epochs = 6
        num_samples = _clamp((budget_s - epochs * per_epoch_eval) / (epochs * per_sample), 256, train_size)
    return {"epochs": epochs, "num_samples": num_samples, "batch_size": 64,
            "test_samples": test_samples, "max_minutes": budget_s / 60}


def _plan_analysis(name: str, budget_s: float, cost: dict[str, float]) -> dict[str, Any]:
    fwd = cost["forward_s_per_sample"]
    if name == "landscape":  # finer grid first, then fewer samples (odd steps: theta* is a grid point)
        per_point_sample = cost.get("landscape_s_per_point_sample", 2 * fwd) * 1.1
        for steps in (21, 17, 15, 13, 11, 9, 7, 5):
            samples = budget_s / (steps * steps * per_point_sample)
            if samples >= 128:
                return {"steps": steps, "num_samples": _clamp(samples, 128, 512), "dims": 2}
        return {"steps": 5, "num_samples": _clamp(budget_s / (25 * per_point_sample), 32, 128), "dims": 2}
    if name == "robustness":
        freqs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
        return {"num_samples": _clamp(budget_s / ((len(freqs) + 1) * fwd * 1.5), 64, 2000), "freqs": freqs}
    if name in ("fourier", "variance"):
        return {"num_samples": _clamp(budget_s / (fwd * 4), 64, 1024)}
    if name == "cka":
        return {"num_samples": _clamp(budget_s / (fwd * 8), 64, 1024), "batch_size": 64}
    raise KeyError(name)


# ------------------------------------------------------------------------------------ stages
def _analysis_argv(name: str, plan: dict[str, Any]) -> list[str]:
    if name == "max_eigen":
        argv = ["hessian", "--mode", "max-eigen", "--which", "LM", "--num-batches", plan["num_batches"],
                "--batch-size", plan["batch_size"], "--top-k", plan["top_k"], "--tol", plan["tol"],
                "--max-hvp", plan["max_hvp"], "--split", "train"]
        return argv
    if name == "landscape":
        return ["landscape", "--steps", plan["steps"], "--num-samples", plan["num_samples"],
                "--dims", plan["dims"], "--split", "train"]
    if name == "robustness":
        return ["robustness", "--num-samples", plan["num_samples"], "--freqs", *plan["freqs"]]
    argv = [name, "--num-samples", plan["num_samples"]]
    if "batch_size" in plan:
        argv += ["--batch-size", plan["batch_size"]]
    return argv


def _run_command(argv: list[str]) -> None:
    from . import commands

    parsed = _parse(argv)
    getattr(commands, f"run_{parsed.run}")(parsed)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _seconds_per_hvp(ckpt: Path, device, batch_size: int = 16) -> float:
    """Time one Hessian-vector product of a mini-batch of the embedded training data, taken the way
    max_eigenvalue_spectrum takes it (forward-over-reverse)."""
    import torch

    from .. import HessianOperator
    from . import _common as common

    model = common.load_model(str(ckpt), num_classes=10, device=device)
    x, y = next(iter(common.build_loader("synthetic", "train", batch_size, num_samples=batch_size)))
    H = HessianOperator(model, common.loss_fn(), (x.to(device), y.to(device)), hvp_mode="forward-over-reverse")
    v = torch.randn(H.num_params, device=device, dtype=H.dtype)
    H.matvec(v)  # warm-up
    return _best_time(lambda: H.matvec(v), 2)


def _measure_landscape(ckpt: Path, device, steps: int = 3, num_samples: int = 64) -> float:
    """Seconds per (grid point x sample) of loss_landscape itself, with its defaults: its functional
    forward costs more per sample than the model's plain channels-last forward that `cost` times."""
    import fastvit_analysis as fa

    from . import _common as common

    model = common.load_model(str(ckpt), num_classes=10, device=device)
    x, y = next(iter(common.build_loader("synthetic", "train", num_samples, num_samples=num_samples)))
    data = (x.to(device), y.to(device))

    def run():
        fa.loss_landscape(model, common.loss_fn(), data, steps=steps, dims=2, progress=False)

    return _best_time(run, 2) / (steps * steps * num_samples)


def _calibrate_max_eigen(args, ckpt: Path, device, budget_s: float, quick: bool) -> dict[str, Any]:
    """Size the max-eigenvalue spectrum (mini-batches x Lanczos budget) to `budget_s` from the
    measured cost of one mini-batch HVP."""
    if quick:
        return dict(QUICK_PLAN["max_eigen"])
    t_hvp = _seconds_per_hvp(ckpt, device)
    # Measured on 2 CPU cores (demo models, batch 16, tol 1e-2): top-5 Lanczos converges in 20-30 HVPs
    # per mini-batch, and the solver (vmapped mini-batches, residual checks) costs about 1.1x the bare
    # HVP count times the single-HVP time; plan with 1.5x and 30 HVPs per mini-batch, and cap each
    # mini-batch at twice that so an unconverged one cannot run away with the stage.
    total = max(0.0, budget_s - 3 * t_hvp) / (t_hvp * 1.5)  # HVPs that fit, for all mini-batches together
    per_batch = 30
    num_batches = _clamp(total / per_batch, 2, 64)
    max_hvp = _clamp(2 * total / num_batches, MAX_EIGEN_SOLVER["top_k"] + 10, MAX_EIGEN_SOLVER["max_hvp"])
    return {"num_batches": num_batches, "batch_size": 16, "top_k": MAX_EIGEN_SOLVER["top_k"],
            "tol": MAX_EIGEN_SOLVER["tol"], "max_hvp": max_hvp, "seconds_per_hvp": round(t_hvp, 3)}


# ---------------------------------------------------------------------------------- the demo
def run_demo(args) -> int:
    from . import _common as common
    from .report import write_report

    quick = args.quick
    total_s = 60 * (args.budget_minutes or (1.5 if quick else 14.0))
    device = common.setup(args)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    plan_file = out / "demo_plan.json"
    plan: dict[str, Any] = {} if args.fresh else (_read(plan_file) or {})
    if plan.get("quick") != quick or plan.get("models") != list(args.models) or plan.get("seed") != args.seed:
        plan = {"quick": quick, "models": list(args.models), "seed": args.seed, "per_model": {}}
    plan_before = {k: dict(v) for k, v in plan["per_model"].items()}
    n_models = len(args.models)
    shares = [TRAIN_SHARE / n_models] * n_models
    for name in ANALYSES:
        shares += [ANALYSIS_SHARES[name] / n_models] * n_models
    clock = Clock(total_s, shares)
    stages: list[Stage] = []
    failed = 0
    print(f"demo: {n_models} models, budget {total_s / 60:.1f} min, output {out}/ "
          f"({'quick' if quick else 'full'} settings{', re-using previous results' if plan['per_model'] else ''})")

    def save_plan():
        plan_file.write_text(json.dumps(plan, indent=2))

    def run_stage(stage: Stage, fn) -> None:
        nonlocal failed
        start = time.perf_counter()
        try:
            status = fn()
            stage.status = status or "done"
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one failing analysis must not cost the whole report
            failed += 1
            stage.status = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            if args.debug:
                traceback.print_exc()
        stage.seconds = time.perf_counter() - start
        stages.append(stage)
        print(f"demo [{clock.elapsed() / 60:5.1f} min] {stage.stage:<10} {stage.model:<14} "
              f"{stage.seconds:6.1f} s (budget {stage.budget_s:5.0f} s)  {stage.status}", flush=True)

    # 1. training ---------------------------------------------------------------------------
    from ..data.synthetic import SYNTHETIC_SIZES

    train_size = SYNTHETIC_SIZES["train"]
    for name in args.models:
        folder = out / name
        model_plan = plan["per_model"].setdefault(name, {})
        stage = Stage("train", name, clock.next_budget())

        def train_stage(name=name, folder=folder, model_plan=model_plan, stage=stage):
            if _read(folder / "train.json") and (folder / "last.pt").is_file() and "train" in model_plan:
                return "reused"
            _forget_analyses(folder, model_plan)
            if quick:
                model_plan["cost"] = {"forward_s_per_sample": 1e-3, "train_s_per_sample": 3e-3}
                model_plan["train"] = dict(QUICK_PLAN["train"])
            else:
                cost = _measure(name, device, 10)
                model_plan["cost"] = cost
                model_plan["train"] = _plan_training(stage.budget_s, cost, train_size)
            save_plan()
            tp = model_plan["train"]
            argv = ["train", "--model", name, "--data", "synthetic", "--device", args.device, "--out", folder,
                    "--epochs", tp["epochs"], "--batch-size", tp["batch_size"], "--seed", args.seed,
                    "--test-samples", tp["test_samples"], *DEMO_RECIPE]
            if tp["epochs"] < 3:
                argv += ["--warmup-epochs", 0]
            if tp.get("num_samples"):
                argv += ["--num-samples", tp["num_samples"]]
            if tp.get("max_minutes"):
                argv += ["--max-minutes", f"{tp['max_minutes']:.3f}"]
            if args.no_progress:
                argv.append("--no-progress")
            if "train" not in plan_before.get(name, {}):
                argv.append("--no-resume")  # a checkpoint from other settings (or --fresh) is not ours
            stage.detail = dict(tp)
            _run_command(argv)
            return None

        run_stage(stage, train_stage)

    # 2. analyses ---------------------------------------------------------------------------
    for analysis in ANALYSES:
        for name in args.models:
            folder = out / name
            ckpt = folder / "last.pt"
            model_plan = plan["per_model"].setdefault(name, {})
            stage = Stage(analysis, name, clock.next_budget())

            def analysis_stage(analysis=analysis, folder=folder, ckpt=ckpt, model_plan=model_plan, stage=stage):
                if not ckpt.is_file():
                    raise CLIError(f"no checkpoint {ckpt} (training failed)")
                sizes = model_plan.get(analysis)
                if sizes is None:
                    if quick:
                        sizes = dict(QUICK_PLAN[analysis])
                    elif analysis == "max_eigen":
                        sizes = _calibrate_max_eigen(args, ckpt, device, stage.budget_s, quick)
                    else:
                        cost = dict(model_plan.get("cost") or _measure(str(ckpt), device, 10))
                        if analysis == "landscape":
                            cost["landscape_s_per_point_sample"] = _measure_landscape(ckpt, device)
                            model_plan["cost"] = cost
                        sizes = _plan_analysis(analysis, stage.budget_s, cost)
                    _forget_points(folder, analysis)  # partial results of earlier sizes cannot be resumed
                    model_plan[analysis] = sizes
                    save_plan()
                stage.detail = dict(sizes)
                argv = _analysis_argv(analysis, sizes) + _common_argv(args, ckpt, folder)
                result_file = folder / RESULT_FILE[analysis]
                previous = _read(result_file)
                if (previous and previous.get("settings") == _settings_for(argv)
                        and result_file.stat().st_mtime >= ckpt.stat().st_mtime):
                    return "reused"
                _run_command(argv)
                return None

            run_stage(stage, analysis_stage)

    # 3. report and summary -----------------------------------------------------------------
    total = clock.elapsed()
    demo_payload = {"analysis": "demo", "model": "demo", "total_seconds": total, "budget_seconds": total_s,
                    "quick": quick, "stages": [s.__dict__ for s in stages]}
    common.write_json(out / "demo.json", demo_payload)
    report = write_report(out, title="fastvit-analysis demo: CNN vs ViT vs AlterNet on the embedded data")
    total = clock.elapsed()
    demo_payload["total_seconds"] = total
    common.write_json(out / "demo.json", demo_payload)
    write_report(out, title="fastvit-analysis demo: CNN vs ViT vs AlterNet on the embedded data")
    print()
    print(summary_table(out, args.models))
    print(f"\ndemo: finished in {total / 60:.1f} min; report: {report}"
          + (f"; {failed} stage(s) failed (see above)" if failed else ""))
    return 1 if failed else 0


def _forget_analyses(folder: Path, model_plan: dict[str, Any]) -> None:
    """A model about to be (re)trained invalidates its earlier analyses and their partial results."""
    for analysis in ANALYSES:
        model_plan.pop(analysis, None)
        (folder / RESULT_FILE[analysis]).unlink(missing_ok=True)
        _forget_points(folder, analysis)


def _forget_points(folder: Path, analysis: str) -> None:
    """Drop the resumable partial results of `analysis` (they belong to the sizes they were run with)."""
    import shutil

    shutil.rmtree(folder / f"{analysis}_points", ignore_errors=True)


def _settings_for(argv: list[str]) -> dict[str, Any]:
    from .commands import settings_of

    return json.loads(json.dumps(settings_of(_parse(argv))))


SUMMARY_COLUMNS = [
    ("train", "test accuracy (%)", "test acc %"),
    ("max_eigen", "negative fraction", "neg. eig. frac"),
    ("max_eigen", "positive mean", "pos. eig. mean"),
    ("landscape", "mean rise at border", "landscape rise"),
    ("fourier", "dlogamp at pi, last block", "dlogamp@pi last"),
    ("fourier", "dlogamp at pi, mean", "dlogamp@pi mean"),
    ("robustness", "dAcc at highest freq", "dAcc@0.9pi (%)"),
    ("variance", "variance, last block", "var last"),
]


def summary_table(out: Path, models: list[str]) -> str:
    """The paper's contrasts as a text table, one row per model."""
    header = ["model"] + [title for _, _, title in SUMMARY_COLUMNS]
    rows = [header]
    for name in models:
        row = [name]
        for analysis, key, _ in SUMMARY_COLUMNS:
            payload = _read(out / name / RESULT_FILE[analysis]) or {}
            value = (payload.get("summary") or {}).get(key)
            row.append(f"{value:.4g}" if isinstance(value, (int, float)) else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)

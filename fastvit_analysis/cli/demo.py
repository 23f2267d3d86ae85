"""`fastvit-analysis demo`: train three small models on the embedded data and compare them like the paper.

A FIXED recipe (RECIPE / QUICK_RECIPE below): epochs, sample counts and solver budgets depend only on the
code, the seed and --quick, never on measured time, so the same command gives the same numbers on an
idle, a loaded or a faster machine (a slower one only takes longer). The thread count is part of the
recipe (DEMO_THREADS): floating-point sums split over threads are fixed by that count, so it is pinned.
Stages run in this process through the same code as the subcommands (the demo's files are exactly what
`fastvit-analysis <command>` writes); a re-run reuses every stage whose settings and inputs are unchanged.
After the analyses the demo evaluates the paper's claims C1–C8 (OUT/claims.json) and writes the report.
"""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CLIError
from .parser import build_parser

DEMO_THREADS = 2
ANALYSES = ["max_eigen_warmup", "max_eigen", "landscape", "fourier", "variance", "cka", "robustness",
            "shape_bias"]
RESULT_FILE = {"max_eigen": "max_eigen.json", "max_eigen_warmup": "warmup/max_eigen.json",
               "landscape": "landscape.json", "fourier": "fourier.json", "variance": "variance.json",
               "cka": "cka.json", "robustness": "robustness.json", "shape_bias": "shape_bias.json",
               "train": "train.json"}
ROLES = {"cnn": "demo_resnet", "vit": "demo_vit", "alternet": "demo_alternet"}
# A few CPU minutes are far from the paper's 300 epochs: a larger learning rate and no Mixup/CutMix/
# RandAugment let the small models learn the embedded data (crop + flip stay on; AdamW weight decay 0.05
# as the paper).
DEMO_TRAIN_FLAGS = ["--lr", "2e-3", "--mixup", "0", "--cutmix", "0", "--randaugment", "none", "--channels-last"]
HIGH_FREQS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
RECIPE: dict[str, dict[str, Any]] = {
    # the embedded data's image side: 'synthetic' at 32, else 'synthetic:SIZE' (docs/data.md)
    "data": {"image_size": 16},
    "train": {"epochs": 8, "warmup_epochs": 1, "num_samples": 5000, "test_samples": 1000, "batch_size": 64},
    # the paper's max-eigenvalue spectrum: top-5 (largest magnitude, signed) of each mini-batch of 16 of
    # the AUGMENTED training data, with the weight-decay term; at the end of warm-up and at the end
    "max_eigen": {"num_batches": 64, "batch_size": 16, "top_k": 5, "tol": 1e-2, "max_hvp": 40, "per_pass": 16,
                  "weight_decay": 0.05},
    # batches of 32: the border-rise interval bootstraps over the 16 batches (4 of 128 are too few)
    "landscape": {"steps": 21, "num_samples": 512, "batch_size": 32, "dims": 2, "l2_coef": 0.05},
    "fourier": {"num_samples": 512},
    "variance": {"num_samples": 512},
    "cka": {"num_samples": 512, "batch_size": 64},
    "robustness": {"num_samples": 2000, "freqs": HIGH_FREQS},
    "shape_bias": {"num_samples": 1800},
}
QUICK_RECIPE: dict[str, dict[str, Any]] = {
    "data": {"image_size": 16},
    "train": {"epochs": 2, "warmup_epochs": 1, "num_samples": 128, "test_samples": 64, "batch_size": 32},
    "max_eigen": {"num_batches": 2, "batch_size": 4, "top_k": 1, "tol": 1e-2, "max_hvp": 4, "weight_decay": 0.05},
    "landscape": {"steps": 3, "num_samples": 16, "dims": 2, "l2_coef": 0.05},
    "fourier": {"num_samples": 16},
    "variance": {"num_samples": 16},
    "cka": {"num_samples": 16, "batch_size": 8},
    "robustness": {"num_samples": 32, "freqs": [0.1, 0.5, 0.9]},
    "shape_bias": {"num_samples": 90},
}
# Expected share of the run time of each stage (for the ETA only; never used to size anything).
# (Seconds per model of the full recipe on 2 idle cores, 16x16 images; the ETA scales them by the pace so far.)
ETA_WEIGHT = {"train": 31.0, "max_eigen_warmup": 54.0, "max_eigen": 48.0, "landscape": 63.0, "fourier": 0.5,
              "variance": 0.4, "cka": 0.7, "robustness": 4.5, "shape_bias": 0.3}


@dataclass
class Stage:
    stage: str
    model: str
    seconds: float = 0.0
    status: str = "pending"
    detail: dict[str, Any] = field(default_factory=dict)


def recipe(quick: bool) -> dict[str, dict[str, Any]]:
    """The demo's fixed sizes (a copy): RECIPE, or QUICK_RECIPE with --quick."""
    return json.loads(json.dumps(QUICK_RECIPE if quick else RECIPE))


def pin_threads(threads: int = DEMO_THREADS) -> None:
    """Fix the intra-op thread count (results depend on it through the order of floating-point sums) and
    make torch pick deterministic kernels."""
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _parse(argv: list[str]):
    return build_parser().parse_args([str(a) for a in argv])


def data_spec(image_size: int = 32) -> str:
    """The --data of every stage: 'synthetic' at 32×32, else 'synthetic:SIZE'."""
    return "synthetic" if image_size == 32 else f"synthetic:{image_size}"


def _common_argv(args, model_path: Path, out: Path, data: str = "synthetic") -> list[str]:
    argv = ["--model", str(model_path), "--data", data, "--device", args.device, "--out", str(out),
            "--seed", str(args.seed)]
    return argv + (["--no-progress"] if args.no_progress else [])


def train_argv(name: str, folder: Path, plan: dict[str, Any], args, data: str = "synthetic") -> list[str]:
    argv = ["train", "--model", name, "--data", data, "--device", args.device, "--out", folder,
            "--epochs", plan["epochs"], "--warmup-epochs", plan["warmup_epochs"], "--batch-size", plan["batch_size"],
            "--seed", args.seed, "--test-samples", plan["test_samples"], "--num-samples", plan["num_samples"],
            "--checkpoint-every", 1, *DEMO_TRAIN_FLAGS]
    return argv + (["--no-progress"] if args.no_progress else [])


def analysis_argv(name: str, plan: dict[str, Any]) -> list[str]:
    """The subcommand line of one analysis of the recipe (without model/data/out)."""
    if name in ("max_eigen", "max_eigen_warmup"):
        return ["hessian", "--mode", "max-eigen", "--which", "LM", "--num-batches", plan["num_batches"],
                "--batch-size", plan["batch_size"], "--top-k", plan["top_k"], "--tol", plan["tol"],
                "--max-hvp", plan["max_hvp"], "--weight-decay", plan["weight_decay"], "--augment",
                "--split", "train", *(["--per-pass", plan["per_pass"]] if "per_pass" in plan else [])]
    if name == "landscape":
        return ["landscape", "--steps", plan["steps"], "--num-samples", plan["num_samples"],
                "--dims", plan["dims"], "--l2-coef", plan["l2_coef"], "--split", "train",
                *(["--batch-size", plan["batch_size"]] if "batch_size" in plan else [])]
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


def _settings_for(argv: list[str]) -> dict[str, Any]:
    from .commands import settings_of

    return json.loads(json.dumps(settings_of(_parse(argv))))


def _fresh(result_file: Path, settings: dict[str, Any], inputs: list[Path]) -> bool:
    """A finished result is reusable when it was made with these settings after its inputs."""
    previous = _read(result_file)
    return bool(previous and previous.get("settings") == settings
                and all(p.is_file() and result_file.stat().st_mtime >= p.stat().st_mtime for p in inputs))


def run_shape_bias(model_path: Path, out: Path, *, num_samples: int, seed: int, device: str,
                   label: str, image_size: int = 32) -> dict[str, Any]:
    """Cue-conflict decisions of one model -> OUT/shape_bias.json (settings recorded like a subcommand)."""
    import fastvit_analysis

    from ..data.synthetic import SyntheticShapes
    from ..features.shape_bias import shape_bias
    from . import _common as common

    start = time.perf_counter()
    model = common.load_model(str(model_path), num_classes=10, device=common.resolve_device(device))
    result = shape_bias(model, SyntheticShapes("conflict", num_samples=num_samples, seed=seed, size=image_size))
    summary = result.to_dict()["summary"]
    payload = {"analysis": "shape_bias", "model": label, "model_source": str(model_path), "data": "synthetic:conflict",
               "settings": shape_bias_settings(num_samples, seed, image_size), "summary": summary, "plot": {},
               "result": result.to_dict(), "seconds": round(time.perf_counter() - start, 3),
               "version": fastvit_analysis.__version__, "figures": []}
    common.write_json(out / "shape_bias.json", payload)
    bias = summary.get("shape bias")
    if bias:
        print(f"shape_bias [{label}] shape bias={bias['value']:.3g} [{bias['ci95'][0]:.3g}, {bias['ci95'][1]:.3g}]"
              f" over {bias['n']} cue decisions -> {out / 'shape_bias.json'}")
    return payload


def shape_bias_settings(num_samples: int, seed: int, image_size: int = 32) -> dict[str, Any]:
    settings = {"split": "conflict", "num_samples": num_samples, "seed": seed}
    return settings if image_size == 32 else {**settings, "image_size": image_size}


class ETA:
    """Elapsed time and a remaining-time estimate from the stages' fixed weights and the pace so far."""

    def __init__(self, weights: list[float]):
        self.start = time.perf_counter()
        self.total = sum(weights) or 1.0
        self.done = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def advance(self, weight: float) -> str:
        self.done += weight
        if self.done <= 0:
            return "ETA ?"
        left = self.elapsed() / self.done * (self.total - self.done)
        return f"ETA {left / 60:4.1f} min"


# ---------------------------------------------------------------------------------- the demo
def run_demo(args) -> int:
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    pin_threads()
    try:
        return _run_demo(args)
    finally:  # leave the caller's process as it was (tests call main() in-process)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _run_demo(args) -> int:
    from . import _common as common

    common.setup(args)  # each stage resolves --device itself
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    plan = recipe(args.quick)
    if args.fresh:
        for name in args.models:
            _forget_training(out / name)
    todo = stage_table(args.models)
    eta = ETA([ETA_WEIGHT[s.stage] for s in todo])
    print(f"demo: {len(args.models)} models, {len(todo)} stages, fixed {'quick' if args.quick else 'full'} recipe, "
          f"{DEMO_THREADS} threads, seed {args.seed}, output {out}/", flush=True)
    for i, stage in enumerate(todo, 1):
        stage.detail = dict(stage_sizes(plan, stage.stage))
        run_stage(stage, lambda stage=stage: _stage_fn(stage, out / stage.model, plan, args), debug=args.debug)
        print(f"demo [{i:2d}/{len(todo)} {eta.elapsed() / 60:5.1f} min, {eta.advance(ETA_WEIGHT[stage.stage])}] "
              f"{stage.stage:<16} {stage.model:<14} {stage.seconds:6.1f} s  {stage.status}", flush=True)
    return finish_demo(out, args, plan, todo, eta)


def stage_table(models: list[str]) -> list[Stage]:
    """Every stage of the demo in run order: each model's training, then each analysis for each model."""
    return [Stage("train", m) for m in models] + [Stage(a, m) for a in ANALYSES for m in models]


def stage_sizes(plan: dict[str, dict[str, Any]], stage: str) -> dict[str, Any]:
    """The recipe entry of a stage (the warm-up spectrum has the final one's sizes)."""
    return plan["max_eigen" if stage == "max_eigen_warmup" else stage]


def run_stage(stage: Stage, fn, *, debug: bool = False) -> None:
    """Run fn() -> None | "reused" and record its status and seconds on `stage`; an exception marks the
    stage failed (one failing analysis must not cost the whole report) unless it is an interrupt."""
    start = time.perf_counter()
    try:
        stage.status = fn() or "done"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 -- recorded as the stage's status
        stage.status = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        if debug:
            traceback.print_exc()
    stage.seconds = time.perf_counter() - start


def _stage_fn(stage: Stage, folder: Path, plan: dict[str, dict[str, Any]], args) -> str | None:
    image_size = plan["data"]["image_size"]
    if stage.stage == "train":
        return train_stage(stage.model, folder, plan["train"], args, data_spec(image_size))
    return analysis_stage(stage.stage, stage.model, folder, stage_sizes(plan, stage.stage),
                          plan["train"]["warmup_epochs"], args, image_size)


def train_stage(name: str, folder: Path, sizes: dict[str, Any], args, data: str = "synthetic") -> str | None:
    """Train `name` into `folder` on `data` unless a train.json of these settings is newer than its last.pt."""
    argv = train_argv(name, folder, sizes, args, data) + ["--no-resume"]  # no checkpoint of other settings
    if _fresh(folder / "train.json", _settings_for(argv), [folder / "last.pt"]):
        return "reused"
    _forget_analyses(folder)
    _run_command(argv)
    return None


def analysis_stage(analysis: str, name: str, folder: Path, sizes: dict[str, Any], warmup_epochs: int,
                   args, image_size: int = 32) -> str | None:
    """Run one analysis of the trained model in `folder` (the warm-up spectrum on the checkpoint of epoch
    `warmup_epochs`), unless its result of these settings is newer than the checkpoint."""
    from . import _common as common

    ckpt = folder / (f"checkpoint_epoch{warmup_epochs}.pt" if analysis == "max_eigen_warmup" else "last.pt")
    if not ckpt.is_file():
        raise CLIError(f"no checkpoint {ckpt} (training failed)")
    result_file = folder / RESULT_FILE[analysis]
    if analysis == "shape_bias":
        if _fresh(result_file, shape_bias_settings(sizes["num_samples"], args.seed, image_size), [ckpt]):
            return "reused"
        run_shape_bias(ckpt, folder, num_samples=sizes["num_samples"], seed=args.seed, device=args.device,
                       label=name, image_size=image_size)
        return None
    target = result_file.parent
    argv = analysis_argv(analysis, sizes) + _common_argv(args, ckpt, target, data_spec(image_size))
    if _fresh(result_file, _settings_for(argv), [ckpt]):
        return "reused"
    _forget_points(target, analysis.replace("_warmup", ""))  # partial results of other weights
    _run_command(argv)
    if analysis == "max_eigen_warmup":  # its own label in the report and the claims
        payload = _read(result_file) or {}
        payload["model"] = f"{name} (end of warm-up)"
        common.write_json(result_file, payload)
    return None


def finish_demo(out: Path, args, plan: dict[str, dict[str, Any]], stages: list[Stage], eta: ETA) -> int:
    """Claims, OUT/demo.json, the report and the closing tables; 1 when a stage failed."""
    from . import _common as common
    from .report import write_report

    failed = sum(s.status.startswith("failed") for s in stages)
    claims_status = write_claims(out, args.models)
    print(f"demo: claims: {claims_status}", flush=True)
    demo_payload = {"analysis": "demo", "model": "demo", "total_seconds": eta.elapsed(), "quick": args.quick,
                    "threads": DEMO_THREADS, "seed": args.seed, "recipe": plan, "claims": claims_status,
                    "stages": [s.__dict__ for s in stages]}
    common.write_json(out / "demo.json", demo_payload)
    report = write_report(out, title="fastvit-analysis demo: CNN vs ViT vs AlterNet on the embedded data")
    print()
    claims = _read(out / "claims.json")
    if claims:
        print(claims_text(claims))
        print()
    print(summary_table(out, args.models))
    print(f"\ndemo: finished in {eta.elapsed() / 60:.1f} min; report: {report}"
          + (f"; {failed} stage(s) failed (see above)" if failed else ""))
    return 1 if failed else 0


# ------------------------------------------------------------------------------------ claims
def claims_inputs(out: Path, models: list[str], *, max_eigen: str = "max_eigen_warmup") -> dict[str, dict[str, Any]]:
    """model label -> {analysis: result JSON} for evaluate_claims, read from OUT/<model>/. The max-eigenvalue
    spectrum is the one at the end of warm-up (the paper's); accuracy is the clean per-image correctness of
    the robustness test (the same images for every model) when recorded, else the training's test accuracy
    as (correct, n)."""
    results: dict[str, dict[str, Any]] = {}
    for name in models:
        folder = out / name
        entry: dict[str, Any] = {}
        for analysis, key in (("landscape", "landscape"), (max_eigen, "max_eigen"), ("fourier", "fourier"),
                              ("variance", "variance"), ("cka", "cka"), ("robustness", "robustness")):
            payload = _read(folder / RESULT_FILE[analysis])
            if payload and isinstance(payload.get("result"), dict):
                entry[key] = payload["result"]
        clean = (entry.get("robustness") or {}).get("clean_correct")
        train = _read(folder / "train.json") or {}
        acc, n = ((train.get("summary") or {}).get("test_accuracy") or {}).get("value"), \
            (train.get("settings") or {}).get("test_samples")
        if clean:
            entry["accuracy"] = [float(c) for c in clean]
        elif isinstance(acc, (int, float)) and isinstance(n, int):
            entry["accuracy"] = (int(round(acc * n / 100)), n)
        results[name] = entry
    return results


def write_claims(out: Path, models: list[str], roles: dict[str, str] | None = None) -> str:
    """Evaluate C1–C8 on the results in OUT/<model>/ into OUT/claims.json; returns a one-line status.
    `roles`: "cnn"/"vit"/"alternet" -> model (default ROLES, the demo models)."""
    try:
        from ..claims import evaluate_claims
    except ImportError:
        return "skipped: claims module not available"
    roles = {role: label for role, label in (roles or ROLES).items() if label in models}
    try:
        claims = evaluate_claims(claims_inputs(out, models), roles=roles)
    except Exception as exc:  # the report still shows every figure
        return f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    claims.save_json(out / "claims.json")
    return f"written {out / 'claims.json'}"


def claims_text(claims: dict[str, Any]) -> str:
    """claims.json as a plain-text table: id, contrast [95% interval] (n), verdict, title."""
    lines = []
    for row in claims.get("rows", []):
        c = row.get("contrast") or {}
        lo, hi = (c.get("ci95") or [None, None])
        value = c.get("value")
        text = "-" if value is None else f"{value:.3g} [{_g(lo)}, {_g(hi)}] (n={c.get('n')})"
        lines.append(f"{row.get('id', '?'):<4} {text:<36} {row.get('verdict', '?'):<14} {row.get('title', '')}")
    return "\n".join(["claim contrast [95% interval] (n)         verdict        title", "-" * 78, *lines])


def _g(x: Any) -> str:
    return "?" if x is None else f"{x:.3g}"


def _forget_training(folder: Path) -> None:
    """--fresh: drop a model's checkpoints, training result and analyses."""
    _forget_analyses(folder)
    for f in [folder / "train.json", folder / "last.pt", *folder.glob("checkpoint_epoch*.pt")]:
        f.unlink(missing_ok=True)


def _forget_analyses(folder: Path) -> None:
    """A model about to be (re)trained invalidates its earlier analyses and their partial results."""
    for analysis in ANALYSES:
        result_file = folder / RESULT_FILE[analysis]
        result_file.unlink(missing_ok=True)
        _forget_points(result_file.parent, analysis.replace("_warmup", ""))


def _forget_points(folder: Path, analysis: str) -> None:
    """Drop the resumable partial results of `analysis` (they belong to the sizes they were run with)."""
    import shutil

    shutil.rmtree(folder / f"{analysis}_points", ignore_errors=True)


SUMMARY_COLUMNS = [  # (analysis, summary() key, column title)
    ("train", "test_accuracy", "test acc %"),
    ("max_eigen", "negative_fraction", "neg. eig. frac"),
    ("max_eigen", "positive_mean", "pos. eig. mean"),
    ("landscape", "border_rise", "landscape rise"),
    ("fourier", "high_frequency/last", "dlogamp@pi last"),
    ("robustness", "delta_accuracy/high", "dAcc@>=0.6pi (%)"),
    ("variance", "variance/last", "var last"),
    ("shape_bias", "shape bias", "shape bias"),
]


def _cell(value: Any) -> str:
    """A number, or an Estimate's JSON as 'v [lo, hi]'."""
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float)):
        lo, hi = value.get("ci95") or [None, None]
        return f"{value['value']:.3g} [{_g(lo)}, {_g(hi)}]"
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def summary_table(out: Path, models: list[str]) -> str:
    """The paper's contrasts as a text table, one row per model."""
    header = ["model"] + [title for _, _, title in SUMMARY_COLUMNS]
    rows = [header]
    for name in models:
        row = [name]
        for analysis, key, _ in SUMMARY_COLUMNS:
            payload = _read(out / name / RESULT_FILE[analysis]) or {}
            value = (payload.get("summary") or {}).get(key)
            row.append(_cell(value))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)

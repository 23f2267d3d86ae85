"""`fastvit-analysis reproduce`: the paper's CIFAR-100 study (docs/methods.md §4, §5) as one resumable command.

Preset "paper": ResNet-50 (pre-activation), ViT-Ti and AlterNet-50 trained with the paper's recipe (AdamW
lr 1.25e-4, wd 0.05, batch 96, 5 warm-up + cosine epochs, label smoothing, Mixup/CutMix, RandAugment,
DropPath); max-eigenvalue spectra on 10% of the augmented training set (312 mini-batches of 16) with the
weight-decay term, at the end of warm-up and at the end; 21×21 loss landscapes (NLL + 0.05·Σ‖p‖) on
training images; Fourier, variance, CKA and frequency-noise robustness on the test set; then the claims
C1–C8 (OUT/claims.json) and OUT/report.html. Preset "tiny" (--tiny) runs the same code path in minutes on
the embedded synthetic data with the demo's small models (a test, not a result).

Every stage is a subcommand run in this process; a stage whose result exists with the same settings and
is newer than its checkpoint is skipped, so an interrupted run resumes stage by stage (training resumes
from OUT/<model>/last.pt, the sweeps from their finished points). Under torchrun each sweep (max-eigen
mini-batches, landscape grid points, noise frequencies) shards across the ranks; rank 0 writes the files.

Example:
    >>> from fastvit_analysis.cli.reproduce import PRESETS
    >>> PRESETS["paper"]["max_eigen"]["num_batches"] * PRESETS["paper"]["max_eigen"]["batch_size"]
    4992
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .demo import (
    HIGH_FREQS,
    RESULT_FILE,
    _common_argv,
    _forget_points,
    _fresh,
    _read,
    _run_command,
    _settings_for,
    analysis_argv,
    claims_text,
    run_shape_bias,
    shape_bias_settings,
    write_claims,
)
from .errors import CLIError

STAGES = ["train", "max_eigen_warmup", "max_eigen", "landscape", "fourier", "variance", "cka", "robustness",
          "shape_bias", "claims"]
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "data": None,  # --data cifar100:/path is required
        "roles": {"cnn": "preact_resnet50_cifar", "vit": "vit_ti_cifar", "alternet": "alternet50_cifar"},
        # train's defaults are the paper's recipe (docs/methods.md §4); --epochs counts the warm-up epochs too
        "train": {"epochs": 300, "warmup_epochs": 5, "batch_size": 96, "checkpoint_every": 5, "flags": []},
        "max_eigen": {"num_batches": 312, "batch_size": 16, "top_k": 5, "tol": 1e-3, "max_hvp": 300,
                      "weight_decay": 0.05},
        "landscape": {"steps": 21, "num_samples": 10000, "dims": 2, "l2_coef": 0.05},
        "fourier": {"num_samples": 10000},
        "variance": {"num_samples": 10000},
        "cka": {"num_samples": 10000, "batch_size": 256},
        "robustness": {"num_samples": 10000, "freqs": HIGH_FREQS},
        "shape_bias": None,  # needs cue-conflict images: only the synthetic data has them
    },
    "tiny": {
        "data": "synthetic",
        "roles": {"cnn": "demo_resnet", "vit": "demo_vit", "alternet": "demo_alternet"},
        "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 32, "checkpoint_every": 1, "num_samples": 96,
                  "test_samples": 48, "flags": ["--mixup", "0", "--cutmix", "0", "--randaugment", "none"]},
        "max_eigen": {"num_batches": 2, "batch_size": 4, "top_k": 1, "tol": 1e-2, "max_hvp": 3, "weight_decay": 0.05},
        "landscape": {"steps": 3, "num_samples": 8, "dims": 2, "l2_coef": 0.05},
        "fourier": {"num_samples": 16},
        "variance": {"num_samples": 16},
        "cka": {"num_samples": 16, "batch_size": 8},
        "robustness": {"num_samples": 16, "freqs": [0.3, 0.7]},
        "shape_bias": {"num_samples": 90},
    },
}


def _train_argv(model: str, folder: Path, plan: dict[str, Any], data: str, args) -> list[str]:
    argv = ["train", "--model", model, "--data", data, "--device", args.device, "--out", folder,
            "--epochs", plan["epochs"], "--warmup-epochs", plan["warmup_epochs"], "--batch-size", plan["batch_size"],
            "--seed", args.seed, "--checkpoint-every", plan["checkpoint_every"], *plan["flags"]]
    for key, flag in (("num_samples", "--num-samples"), ("test_samples", "--test-samples")):
        if plan.get(key):
            argv += [flag, plan[key]]
    return argv + (["--no-progress"] if args.no_progress else [])


def run_reproduce(args) -> int:
    from ..common.distributed import barrier, is_rank_zero
    from . import _common as common
    from .report import write_report

    preset = PRESETS["tiny" if args.tiny else "paper"]
    data = args.data or preset["data"]
    if data is None:
        raise CLIError("--data: the paper preset needs the real data, e.g. --data cifar100:/path/to/cifar100 "
                       "(or --tiny for the synthetic test run)")
    common.parse_data_spec(data)
    stages = args.stages or STAGES
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise CLIError(f"--stages: unknown stage(s) {unknown}; expected some of {STAGES}")
    common.setup(args)
    out = Path(args.out).expanduser()
    if is_rank_zero():
        out.mkdir(parents=True, exist_ok=True)
    roles = preset["roles"]
    models = list(roles.values())
    warmup = preset["train"]["warmup_epochs"]
    start = time.perf_counter()
    done = 0
    total = len([s for s in stages if s != "claims"]) * len(models)

    def say(stage: str, model: str, status: str, seconds: float) -> None:
        if is_rank_zero():
            print(f"reproduce [{done:2d}/{total} {(time.perf_counter() - start) / 60:6.1f} min] {stage:<16} "
                  f"{model:<22} {seconds:7.1f} s  {status}", flush=True)

    for stage in [s for s in STAGES if s in stages and s != "claims"]:
        for model in models:
            folder = out / model
            t0 = time.perf_counter()
            status = _run_stage(stage, model, folder, preset, data, warmup, args)
            barrier()
            done += 1
            say(stage, model, status, time.perf_counter() - t0)
    if "claims" in stages and is_rank_zero():
        status = write_claims(out, models, roles=roles)
        print(f"reproduce: claims: {status}", flush=True)
        claims = _read(out / "claims.json")
        if claims:
            print(claims_text(claims))
        preset_name = "tiny" if args.tiny else "paper"
        report = write_report(out, title=f"fastvit-analysis reproduce ({preset_name} preset, {data})")
        print(f"reproduce: finished in {(time.perf_counter() - start) / 60:.1f} min; report: {report}")
    return 0


def _run_stage(stage: str, model: str, folder: Path, preset: dict[str, Any], data: str, warmup: int,
               args) -> str:
    """Run one stage of one model unless its result is already there; returns 'done', 'reused' or 'skipped'."""
    if stage == "train":
        argv = _train_argv(model, folder, preset["train"], data, args)
        if _fresh(folder / "train.json", _settings_for(argv), [folder / "last.pt"]):
            return "reused"
        _run_command(argv)  # resumes from OUT/<model>/last.pt when it is there
        return "done"
    plan = preset["max_eigen" if stage == "max_eigen_warmup" else stage]
    if plan is None:
        return "skipped (not for this data)"
    ckpt = folder / (f"checkpoint_epoch{warmup}.pt" if stage == "max_eigen_warmup" else "last.pt")
    if not ckpt.is_file():
        raise CLIError(f"{stage} of {model}: no checkpoint {ckpt} (run the train stage first)")
    result_file = folder / RESULT_FILE[stage]
    if stage == "shape_bias":
        if data != "synthetic":
            return "skipped (not for this data)"
        if _fresh(result_file, shape_bias_settings(plan["num_samples"], args.seed), [ckpt]):
            return "reused"
        run_shape_bias(ckpt, folder, num_samples=plan["num_samples"], seed=args.seed, device=args.device, label=model)
        return "done"
    target = result_file.parent
    argv = analysis_argv(stage, plan) + _common_argv(args, ckpt, target)
    argv[argv.index("--data") + 1] = data
    if _fresh(result_file, _settings_for(argv), [ckpt]):
        return "reused"
    points = target / f"{stage.replace('_warmup', '')}_points"
    if points.is_dir() and points.stat().st_mtime < ckpt.stat().st_mtime:  # finished points of older weights
        _forget_points(target, stage.replace("_warmup", ""))
    _run_command(argv)
    if stage == "max_eigen_warmup":
        from . import _common as common

        payload = _read(result_file) or {}
        payload["model"] = f"{model} (end of warm-up)"
        common.write_json(result_file, payload)
    return "done"

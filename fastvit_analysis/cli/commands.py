"""The analysis subcommands: load the model and data named on the command line, call the library,
write OUT/<analysis>.json and OUT/<analysis>.png/.pdf (rank 0 only).

Every result file holds ``{"analysis", "model", "model_source", "data", "settings", "summary", "plot",
"result", ...}``: `result` is the library result's `.to_dict()`, `summary` its `summary()` (name ->
{"value", "ci95", "n"}, the same dicts as ``result["summary"]``) plus a few facts of the run (counts,
world_size, ...), and `plot` the arrays the figures are drawn from, read from the result's fields.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..common.results import to_jsonable
from . import _common as common
from .errors import CLIError


# --------------------------------------------------------------------------------------- helpers
def progress_flag(args) -> bool:
    return not getattr(args, "no_progress", False)


def num_classes_from(loader, spec: str) -> int:
    """Classes of the data: from the spec (synthetic/CIFAR) or the loader's data set (ImageFolder)."""
    parsed = common.parse_data_spec(spec)
    if parsed.num_classes:
        return int(parsed.num_classes)
    dataset = getattr(loader, "dataset", None)
    while dataset is not None:
        classes = getattr(dataset, "classes", None)
        if classes is not None:
            return len(classes)
        dataset = getattr(dataset, "dataset", None)
    return common.num_classes_of(spec)


def load(args, *, split: str | None = None, num_samples: int | None = None, train_loader: bool = False,
         batch_size: int | None = None):
    """(device, model, loader) from --model/--checkpoint/--data/--split/--batch-size/--num-samples."""
    device = common.setup(args)
    common.check_model_arg(args.model)
    if getattr(args, "model_b", None):
        common.check_model_arg(args.model_b, "--model-b")
    common.parse_data_spec(args.data)
    loader = common.build_loader(args.data, split or args.split, batch_size or args.batch_size,
                                 num_samples=num_samples if num_samples is not None else args.num_samples,
                                 seed=args.seed, train=train_loader)
    classes = num_classes_from(loader, args.data)
    model = common.load_model(args.model, num_classes=classes, device=device,
                              checkpoint=getattr(args, "checkpoint", None))
    return device, model, loader


def settings_of(args, *skip: str) -> dict[str, Any]:
    hidden = {"run", "debug", "no_progress", "out", "command", "wait", "timeout", "resolved_device", *skip}
    # one unit per name: frequencies given in units of pi are stored as `*_pi`, radians elsewhere
    units = {"freqs": "freqs_pi"}
    return {units.get(k, k): v for k, v in vars(args).items() if k not in hidden}


def finish(args, out: Path, analysis: str, result: Any, facts: dict, plot: dict, seconds: float,
           *, label: str | None = None, figure_kwargs: dict | None = None, device: Any = None,
           num_samples: int | None = None) -> dict[str, Any]:
    """Write OUT/<analysis>.json and its figure (rank 0), print the key numbers; returns the payload.

    The JSON "summary" is the result's own summary (``result.to_dict()["summary"]``, Estimates as
    {"value", "ci95", "n"}) followed by `facts` (plain numbers and labels of the run)."""
    label = label or common.model_label(args.model)
    if num_samples is None:
        num_samples = getattr(args, "num_samples", None)
    data = result.to_dict()
    summary = {**data.get("summary", {}), **facts}
    payload: dict[str, Any] = {
        "analysis": analysis, "model": label, "model_source": str(args.model), "data": args.data,
        "settings": settings_of(args), "summary": summary, "plot": plot, "result": data,
        "seconds": round(seconds, 3), "version": __version__, "figures": [],
        "provenance": common.provenance(args, device=device,
                                        num_samples=num_samples if isinstance(num_samples, int) else None),
    }
    if common.is_rank_zero():
        from ..plot import FIGURES

        figure_error = None
        draw = FIGURES.get(analysis)
        if draw is not None and hasattr(result, "to_dict"):
            try:
                payload["figures"] = common.save_figure(draw({label: result}, **(figure_kwargs or {})), out,
                                                        analysis)
            except OSError as e:  # the numbers matter more than the picture: still write the JSON
                figure_error = f"could not write the figure into {out} ({e.strerror or e})"
        written, error = common.write_result_or_keep(out / f"{analysis}.json", payload)
        print(f"{analysis} [{label}] {_line(summary)}  ({seconds:.1f} s) -> {written}")
        if error or figure_error:
            raise CLIError("; ".join(e for e in (error, figure_error) if e))
    return payload


SHOWN_ESTIMATES = 4  # per-layer summaries are long: the line shows the first few (the headline ones)


def _line(summary: dict[str, Any]) -> str:
    """`name=value [lo, hi]` for the first SHOWN_ESTIMATES Estimates, then `name=value` for the facts."""
    estimates = [(k, v) for k, v in summary.items() if isinstance(v, dict) and {"value", "ci95", "n"} <= set(v)]
    facts = [(k, v) for k, v in summary.items() if not isinstance(v, (list, dict))]
    shown = [f"{k}={_fmt(v['value'])}" + _interval(v["ci95"]) for k, v in estimates[:SHOWN_ESTIMATES]]
    return ", ".join(shown + [f"{k}={_fmt(v)}" for k, v in facts])


def _interval(ci95: Any) -> str:
    """' [lo, hi]', or '' for an estimate without one (NaN/None bounds: e.g. a loss, a count)."""
    lo, hi = ci95
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return f" [{_fmt(lo)}, {_fmt(hi)}]"


def _fmt(value: Any) -> str:
    if value is None:  # NaN in JSON: no interval
        return "nan"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _floats(value: Any) -> Any:
    """Tensors/arrays -> nested lists of floats (NaN -> None, as every JSON here)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double()
    return to_jsonable(value)


# --------------------------------------------------------------------------- plot data, by field
def train_plot(result) -> dict[str, list]:
    """One series per numeric column of `TrainResult.history` (epoch, train_loss, test_acc, ...)."""
    history = result.history
    keys = sorted({k for row in history for k, v in row.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {k: [row.get(k) for row in history] for k in keys}


def spectrum_plot(result) -> dict[str, list]:
    return {"eigenvalues": _floats(result.eigenvalues), "residuals": _floats(result.residuals)}


def trace_plot(result) -> dict[str, float]:
    return {"trace": float(result.value), "stderr": float(result.stderr)}


def density_plot(result, points: int = 400) -> dict[str, list]:
    """`HessianDensityResult.density` on a grid over the node range (5% margin), σ = 1% of the grid's width."""
    nodes = result.nodes.double().flatten()
    lo, hi = float(nodes.min()), float(nodes.max())
    pad = 0.05 * max(hi - lo, 1e-6)
    grid = torch.linspace(lo - pad, hi + pad, points, dtype=torch.float64)
    sigma = max(1e-6, 0.01 * (hi - lo + 2 * pad))
    return {"grid": grid.tolist(), "density": _floats(result.density(grid, sigma)), "nodes": nodes.tolist(),
            "weights": _floats(result.weights.double().flatten())}


def max_eigen_plot(result) -> dict[str, list]:
    return {"values": _floats(result.eigenvalues.double().flatten())}


def landscape_plot(result) -> dict[str, Any]:
    return {"dims": result.dims, "coords": _floats(result.coordinates), "loss": _floats(result.loss),
            "accuracy": _floats(result.accuracy)}


def fourier_plot(result) -> dict[str, Any]:
    return {"names": list(result.names), "kinds": list(result.kinds), "depth": _floats(result.depths),
            "freqs": _floats(result.frequencies), "delta": _floats(result.delta_log_amplitude),
            "high": _floats(result.high_frequency)}


def variance_plot(result) -> dict[str, Any]:
    return {"names": list(result.names), "kinds": list(result.kinds), "depth": _floats(result.depths),
            "variance": _floats(result.variance)}


def cka_plot(result) -> dict[str, Any]:
    return {"matrix": _floats(result.matrix), "names_a": list(result.names_a), "names_b": list(result.names_b)}


def robustness_plot(result) -> dict[str, Any]:
    return {"freqs_pi": [f / math.pi for f in result.freqs], "delta_acc": _floats(result.delta_accuracy),
            "clean_accuracy": float(result.clean_accuracy)}


# ------------------------------------------------------------------------------------------ train
def run_train(args: argparse.Namespace) -> int:
    from .. import train
    from ..training import ResumeMismatchError

    device = common.setup(args)
    common.check_model_arg(args.model)
    spec = common.parse_data_spec(args.data)
    out = common.out_dir(args, "fastvit-train")
    classes = common.num_classes_of(args.data)
    model = common.load_model(args.model, num_classes=classes, device=device, checkpoint=args.checkpoint,
                              img_size=getattr(spec, "size", None))  # 'synthetic:SIZE' builds for that side
    test_loader = common.build_loader(args.data, "test", 256, num_samples=args.test_samples, seed=args.seed)
    randaugment = None if args.randaugment.lower() in ("none", "off", "") else args.randaugment
    start = time.perf_counter()
    try:
        # the spec string (not a loader) lets train() augment each image (crop, flip, RandAugment)
        result = train(model, args.data, test_data=test_loader, epochs=args.epochs, lr=args.lr,
                       weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
                       label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix,
                       randaugment=randaugment, grad_clip=args.grad_clip, drop_path=args.drop_path, out=str(out),
                       checkpoint_every=args.checkpoint_every,
                       resume="force" if args.force_resume else not args.no_resume, device=device,
                       progress=progress_flag(args), max_minutes=args.max_minutes, seed=args.seed,
                       num_samples=args.num_samples, channels_last=args.channels_last)
    except ResumeMismatchError as exc:
        raise CLIError(f"cannot resume from {str(out / 'last.pt')!r}: its run had other hyper-parameters "
                       f"({'; '.join(exc.differences)}); start over with --no-resume, or continue anyway with "
                       f"--force-resume") from None
    except (OSError, FloatingPointError) as exc:  # unwritable/full --out, divergence: one line, no traceback
        if args.debug:
            raise
        message = str(exc)
        raise RuntimeError(message if message.startswith("train:") else f"train: {message}") from None
    facts = {"epochs": result.epochs_completed, "seconds": result.elapsed_s,
             "stopped early": result.stopped_early, "checkpoint": str(out / "last.pt"),
             "world size": result.world_size}
    # labelled by its folder, like the analyses that later read OUT/last.pt
    finish(args, out, "train", result, facts, train_plot(result), time.perf_counter() - start,
           label=out.resolve().name)
    return 0


# ---------------------------------------------------------------------------------------- hessian
def run_hessian(args: argparse.Namespace) -> int:
    import fastvit_analysis as fa

    from ..common.distributed import world_size
    from ..curvature.sharding import shard_batches

    num_samples = args.num_samples or args.batch_size * args.num_batches
    if args.mode != "max-eigen":
        num_samples = min(num_samples, args.batch_size * args.num_batches)
    device, model, loader = load(args, num_samples=num_samples, train_loader=args.augment)
    out = common.out_dir(args, "fastvit-out")
    loss = common.loss_fn()
    progress = progress_flag(args)
    world = world_size()
    data = loader
    if world > 1 and args.mode != "max-eigen":
        data = shard_batches(loader)  # one Hessian over all ranks: each holds its shard (max-eigen shards mini-batches)
    operator = None
    curvature = getattr(args, "curvature", "hessian")
    if curvature != "hessian":
        if args.mode == "max-eigen" or getattr(args, "per_block", False):
            raise CLIError(f"--curvature {curvature}: only with --mode spectrum, trace or density")
        make = fa.GGNOperator if curvature == "ggn" else fa.EmpiricalFisherOperator
        operator = make(model, loss, data, weight_decay=args.weight_decay)
    start = time.perf_counter()
    if getattr(args, "per_block", False):
        if args.mode != "spectrum":
            raise CLIError("--per-block: only with --mode spectrum")
        result = fa.block_spectra(model, loss, data, top_k=args.top_k, which=args.which, tol=args.tol,
                                  max_hvp=args.max_hvp, weight_decay=args.weight_decay, seed=args.seed,
                                  num_probes=args.num_probes, progress=progress)
        top = result.eigenvalues[:, 0]
        facts = {"blocks": len(result.blocks), "sharpest block": result.blocks[int(top.abs().argmax())]}
        name, plot = "block_spectra", result.plot_dict()
    elif args.mode == "spectrum":
        result = fa.hessian_spectrum(model, loss, data, top_k=args.top_k, which=args.which, tol=args.tol,
                                     max_hvp=args.max_hvp, weight_decay=args.weight_decay, seed=args.seed,
                                     operator=operator, progress=progress)
        name, facts, plot = "hessian_spectrum", {}, spectrum_plot(result)
    elif args.mode == "trace":
        result = fa.hessian_trace(model, loss, data, num_probes=args.num_probes, weight_decay=args.weight_decay,
                                  seed=args.seed, operator=operator, progress=progress)
        name, facts, plot = "hessian_trace", {}, trace_plot(result)
    elif args.mode == "density":
        result = fa.hessian_density(model, loss, data, num_probes=args.num_probes, steps=args.lanczos_steps,
                                    weight_decay=args.weight_decay, seed=args.seed, operator=operator,
                                    progress=progress)
        name, facts, plot = "hessian_density", {}, density_plot(result)
    else:
        result = fa.max_eigenvalue_spectrum(
            model, loss, loader, batch_size=args.batch_size, num_batches=args.num_batches, top_k=args.top_k,
            which=args.which, tol=args.tol, weight_decay=args.weight_decay, per_pass=args.per_pass,
            **({"max_hvp": args.max_hvp} if args.max_hvp else {}),
            seed=args.seed, out=str(out / "max_eigen_points"), resume=args.resume, progress=progress)
        name, facts, plot = "max_eigen", {"values": int(result.eigenvalues.numel())}, max_eigen_plot(result)
    facts["HVPs"] = int(result.num_hvp)
    if name != "hessian_trace" and name != "hessian_density":  # short or failed results are loud
        facts["not converged"] = int((~result.converged.bool()).sum())
    if curvature != "hessian":
        facts["curvature"] = curvature
    facts["world_size"] = world
    finish(args, out, name, result, facts, plot, time.perf_counter() - start,
           num_samples=result.num_samples if name == "max_eigen" else None)
    return 0


# -------------------------------------------------------------------------------------- landscape
def _span(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        s = abs(values[0])
        if s == 0:
            raise CLIError("--span: expected a non-zero half-width")
        return (-s, s)
    if len(values) == 2 and values[0] < values[1]:
        return (float(values[0]), float(values[1]))
    raise CLIError(f"--span: expected 'LO HI' with LO < HI, or one half-width, got {values}")


def run_landscape(args: argparse.Namespace) -> int:
    import fastvit_analysis as fa

    span = _span(args.span)
    if not all(math.isfinite(v) for v in span):
        raise CLIError("--span: values must be finite")
    device, model, loader = load(args)
    out = common.out_dir(args, "fastvit-out")
    start = time.perf_counter()
    result = fa.loss_landscape(model, common.loss_fn(), loader, steps=args.steps, span=span, dims=args.dims,
                               norm=args.norm, seed=args.seed, l2_coef=args.l2_coef,
                               out=str(out / "landscape_points"), resume=args.resume,
                               progress=progress_flag(args))
    loss = result.loss[np.isfinite(result.loss)]
    facts = {"min loss": float(loss.min()) if loss.size else None,
             "max loss": float(loss.max()) if loss.size else None}
    finish(args, out, "landscape", result, facts, landscape_plot(result), time.perf_counter() - start,
           figure_kwargs={"clip": args.clip}, num_samples=result.num_samples)
    return 0


# --------------------------------------------------------------------------------------- features
def _run_layer_statistic(args: argparse.Namespace, name: str) -> int:
    """`fourier` / `variance`: fa.<name>_analysis over the loader, JSON + figures."""
    import fastvit_analysis as fa

    device, model, loader = load(args)
    out = common.out_dir(args, "fastvit-out")
    start = time.perf_counter()
    if name == "fourier":
        result = fa.fourier_analysis(model, loader, progress=progress_flag(args))
        plot = fourier_plot(result)
    else:
        result = fa.variance_analysis(model, loader, progress=progress_flag(args))
        plot = variance_plot(result)
    finish(args, out, name, result, {"layers": len(result.names)}, plot, time.perf_counter() - start,
           num_samples=result.num_samples)
    return 0


def run_fourier(args: argparse.Namespace) -> int:
    return _run_layer_statistic(args, "fourier")


def run_variance(args: argparse.Namespace) -> int:
    return _run_layer_statistic(args, "variance")


def run_cka(args: argparse.Namespace) -> int:
    import fastvit_analysis as fa

    if args.batch_size < 4:
        raise CLIError("--batch-size: CKA needs batches of at least 4 samples")
    device, model, loader = load(args)
    model_b = None
    label = common.model_label(args.model)
    if args.model_b is not None:
        model_b = common.load_model(args.model_b, num_classes=num_classes_from(loader, args.data),
                                    device=device, option="--model-b")
        label = f"{label} vs {common.model_label(args.model_b)}"
    out = common.out_dir(args, "fastvit-out")
    start = time.perf_counter()
    result = fa.minibatch_cka(model, loader, model_b=model_b, progress=progress_flag(args))
    facts = {"shape": [len(result.names_a), len(result.names_b)]}
    finish(args, out, "cka", result, facts, cka_plot(result), time.perf_counter() - start, label=label,
           num_samples=result.num_samples)
    return 0


def run_robustness(args: argparse.Namespace) -> int:
    import fastvit_analysis as fa

    device, model, loader = load(args)
    out = common.out_dir(args, "fastvit-out")
    freqs = [f * math.pi for f in args.freqs]
    start = time.perf_counter()
    result = fa.noise_robustness(model, loader, freqs=freqs, eps=args.eps, bandwidth=args.bandwidth, seed=args.seed,
                out=str(out / "robustness_points"), resume=args.resume, progress=progress_flag(args))
    finish(args, out, "robustness", result, {}, robustness_plot(result), time.perf_counter() - start,
           num_samples=result.num_samples)
    return 0

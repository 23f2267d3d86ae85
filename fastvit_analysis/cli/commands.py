"""The analysis subcommands: load the model and data named on the command line, call the library,
write OUT/<analysis>.json and OUT/<analysis>.png/.pdf (rank 0 only)."""
from __future__ import annotations

import argparse
import inspect
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .. import __version__
from . import _common as common
from . import _extract as extract
from .main import CLIError


# --------------------------------------------------------------------------------------- helpers
def optional_kwargs(fn: Callable, **kwargs: Any) -> dict[str, Any]:
    """The subset of `kwargs` that `fn` accepts (for keyword arguments the API may or may not have,
    such as progress=, seed=). Arguments a user set explicitly are passed through `required`."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


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


def finish(args, out: Path, analysis: str, result: Any, summary: dict, plot: dict, seconds: float,
           *, label: str | None = None, figure_kwargs: dict | None = None,
           device: Any = None) -> dict[str, Any]:
    """Write OUT/<analysis>.json and its figure (rank 0), print the key numbers; returns the payload."""
    label = label or common.model_label(args.model)
    num_samples = next((v for v in (getattr(result, "num_samples", None), getattr(result, "n_samples", None),
                                    getattr(args, "num_samples", None)) if isinstance(v, int)), None)
    payload: dict[str, Any] = {
        "analysis": analysis, "model": label, "model_source": str(args.model), "data": args.data,
        "settings": settings_of(args), "summary": summary, "plot": plot,
        "result": result.to_dict() if hasattr(result, "to_dict") else result,
        "seconds": round(seconds, 3), "version": __version__, "figures": [],
        "provenance": common.provenance(args, device=device, num_samples=num_samples),
    }
    if common.is_rank_zero():
        from . import plots

        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items() if not isinstance(v, (list, dict)))
        figure_error = None
        draw = plots.FIGURES.get(analysis)
        if draw is not None and plot:
            try:
                payload["figures"] = common.save_figure(draw([(label, plot)], **(figure_kwargs or {})), out,
                                                        analysis)
            except OSError as e:  # the numbers matter more than the picture: still write the JSON
                figure_error = f"could not write the figure into {out} ({e.strerror or e})"
        written, error = common.write_result_or_keep(out / f"{analysis}.json", payload)
        print(f"{analysis} [{label}] {shown}  ({seconds:.1f} s) -> {written}")
        if error or figure_error:
            raise CLIError("; ".join(e for e in (error, figure_error) if e))
    return payload


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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
    summary, plot = extract.training(result)
    summary["checkpoint"] = str(out / "last.pt")
    summary["world size"] = result.world_size
    # labelled by its folder, like the analyses that later read OUT/last.pt
    finish(args, out, "train", result, summary, plot, time.perf_counter() - start, label=out.resolve().name)
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
        name, summary, plot = "block_spectra", result.summary_dict(), result.plot_dict()
    elif args.mode == "spectrum":
        fn = fa.hessian_spectrum
        result = fn(model, loss, data, top_k=args.top_k, which=args.which, tol=args.tol, max_hvp=args.max_hvp,
                    weight_decay=args.weight_decay, seed=args.seed, operator=operator, progress=progress)
        name, (summary, plot) = "hessian_spectrum", extract.hessian_spectrum(result)
    elif args.mode == "trace":
        fn = fa.hessian_trace
        result = fn(model, loss, data, num_probes=args.num_probes, weight_decay=args.weight_decay,
                    seed=args.seed, operator=operator, progress=progress)
        name, (summary, plot) = "hessian_trace", extract.hessian_trace(result)
    elif args.mode == "density":
        fn = fa.hessian_density
        result = fn(model, loss, data, num_probes=args.num_probes, steps=args.lanczos_steps,
                    weight_decay=args.weight_decay, seed=args.seed, operator=operator, progress=progress)
        name, (summary, plot) = "hessian_density", extract.hessian_density(result)
    else:
        fn = fa.max_eigenvalue_spectrum
        result = fn(model, loss, loader, batch_size=args.batch_size, num_batches=args.num_batches,
                    top_k=args.top_k, which=args.which, tol=args.tol, weight_decay=args.weight_decay,
                    **({"max_hvp": args.max_hvp} if args.max_hvp else {}),
                    seed=args.seed, out=str(out / "max_eigen_points"), resume=args.resume, progress=progress)
        name, (summary, plot) = "max_eigen", extract.max_eigen(result)
    converged = getattr(result, "converged", None)
    if converged is not None:  # short or failed results are loud: the line says how many did not converge
        summary["not converged"] = int((~torch.as_tensor(converged, dtype=torch.bool)).sum())
    if curvature != "hessian":
        summary["curvature"] = curvature
    summary["world_size"] = world
    finish(args, out, name, result, summary, plot, time.perf_counter() - start)
    if name == "block_spectra" and common.is_rank_zero():
        common.save_figure(result.plot(), out, name)  # the library's figure (no CLI drawing code)
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
    summary, plot = extract.landscape(result)
    finish(args, out, "landscape", result, summary, plot, time.perf_counter() - start,
           figure_kwargs={"clip": args.clip})
    return 0


# --------------------------------------------------------------------------------------- features
def _run_layer_statistic(args: argparse.Namespace, name: str) -> int:
    """`fourier` / `variance`: fa.<name>_analysis over the loader, JSON + figures."""
    import fastvit_analysis as fa

    device, model, loader = load(args)
    out = common.out_dir(args, "fastvit-out")
    start = time.perf_counter()
    analysis = getattr(fa, f"{name}_analysis")
    result = analysis(model, loader, **optional_kwargs(analysis, progress=progress_flag(args)))
    summary, plot = getattr(extract, name)(result)
    finish(args, out, name, result, summary, plot, time.perf_counter() - start)
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
    result = fa.minibatch_cka(model, loader, model_b=model_b,
                              **optional_kwargs(fa.minibatch_cka, progress=progress_flag(args)))
    summary, plot = extract.cka(result)
    finish(args, out, "cka", result, summary, plot, time.perf_counter() - start, label=label)
    return 0


def run_robustness(args: argparse.Namespace) -> int:
    import fastvit_analysis as fa

    device, model, loader = load(args)
    out = common.out_dir(args, "fastvit-out")
    fn = fa.noise_robustness
    freqs = [f * math.pi for f in args.freqs]
    start = time.perf_counter()
    result = fn(model, loader, freqs=freqs, eps=args.eps, bandwidth=args.bandwidth, seed=args.seed,
                out=str(out / "robustness_points"), resume=args.resume, progress=progress_flag(args))
    summary, plot = extract.robustness(result, args.freqs)
    finish(args, out, "robustness", result, summary, plot, time.perf_counter() - start)
    return 0

"""Argument parsing of the `fastvit-analysis` command.

Only argparse is imported here, so `--help` and argument errors answer without loading torch. Each
subcommand's options are one function (`_add_<command>`, registered by `@_subcommand` in the order of
this file, which is the order `--help` lists them), built from the shared argument groups below
(`_add_common`: model and data, run). Adding a subcommand is one such function here and its
`run_<command>(args)` in commands.py (main dispatches by the name).

Example:
    >>> args = build_parser().parse_args(["hessian", "--model", "demo_vit", "--top-k", "3"])
    >>> args.run, args.top_k, args.batch_size, args.split, args.resume
    ('hessian', 3, 16, 'train', True)
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from typing import TYPE_CHECKING, Callable

from .errors import PROG, print_error

__all__ = ["build_parser", "positive_int", "nonnegative_float", "positive_float", "frequency", "steps_type",
           "cka_batch", "PROG", "DATA_HELP", "MODEL_HELP"]

DATA_HELP = ("data set: 'synthetic' (embedded, generated from --seed), 'cifar10:/path', "
             "'cifar100:/path' or 'imagefolder:/path' (never downloaded)")
MODEL_HELP = ("timm model name (e.g. demo_resnet, demo_vit, demo_alternet, alternet50_cifar, "
              "resnet18) or a checkpoint written by `fastvit-analysis train` (…/last.pt)")
DEVICE_HELP = "'cpu' or 'cuda' (under torchrun: each rank's local GPU)"


# ----------------------------------------------------------------------------------------- types
def positive_int(text: str) -> int:
    """argparse type: an int >= 1.

    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def frequency(text: str) -> float:
    """A noise frequency in units of π, in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frequency in units of pi in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a frequency in units of pi in (0, 1], got {text!r}")
    return value


def steps_type(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 grid steps, got {text!r}")
    return value


def cka_batch(text: str) -> int:
    value = positive_int(text)
    if value < 4:
        raise argparse.ArgumentTypeError(f"CKA needs batches of at least 4 samples, got {text!r}")
    return value


# -------------------------------------------------------------------------------- parser classes
class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default once and only when it is true: not for on/off flags (their help
    says what they switch), not for None (the help names the real default), not where the help
    already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.nargs == 0 or default is None or default is argparse.SUPPRESS
                or "default" in text.lower()):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """Prints errors as the single line `fastvit-analysis: error: ...` (usage only with --help)."""

    def error(self, message: str):  # type: ignore[override]
        print_error(message)
        sys.exit(2)


if TYPE_CHECKING:
    Group = argparse._ActionsContainer  # a parser or one of its argument groups
    SubParsers = argparse._SubParsersAction  # what add_subparsers returns


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _command(sub: SubParsers, name: str, *, help: str, description: str,
             examples: tuple[str, ...]) -> argparse.ArgumentParser:
    """The subcommand `name`'s parser; `args.run` names the command for main's dispatch."""
    p = sub.add_parser(name, formatter_class=_Formatter, help=help, description=description,
                       epilog=_examples(*examples))
    p.set_defaults(run=name)
    return p


# -------------------------------------------------------------------------- shared argument groups
def _model_args(g: Group) -> None:
    g.add_argument("--model", required=True, help=MODEL_HELP)
    g.add_argument("--checkpoint", default=None,
                   help="weights to load into --model (a name); must match its architecture "
                        "(default: the model's own initial weights)")


def _data_args(g: Group, *, split: str | None, batch_size: int, num_samples: int | None) -> None:
    g.add_argument("--data", default="synthetic", help=DATA_HELP)
    if split is not None:  # train always trains on the train split and evaluates on the test split
        g.add_argument("--split", default=split, choices=("train", "test"), help="which split to analyse")
    g.add_argument("--batch-size", type=positive_int, default=batch_size, help="loader batch size")
    g.add_argument("--num-samples", type=positive_int, default=num_samples,
                   help="use N samples of the split (a fixed, seeded subset; synthetic: generate N)"
                        + (" (default: all)" if num_samples is None else ""))


def _seed_arg(g: Group, help: str) -> None:
    g.add_argument("--seed", type=int, default=0, help=help)


def _device_arg(g: Group, help: str = DEVICE_HELP) -> None:
    g.add_argument("--device", default="cpu", help=help)


def _progress_arg(g: Group) -> None:
    g.add_argument("--no-progress", action="store_true", help="turn progress bars off")


def _debug_arg(g: Group) -> None:
    g.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _no_resume_arg(g: Group, help: str) -> None:
    g.add_argument("--no-resume", dest="resume", action="store_false", help=help)


def _run_args(r: Group, *, out: str) -> None:
    """Device, output folder (and its lock), progress, torchrun timeout, --debug."""
    _device_arg(r)
    r.add_argument("--out", default=None,
                   help=f"output directory for JSON results and PNG+PDF figures (default: ./{out})")
    _progress_arg(r)
    r.add_argument("--wait", action="store_true",
                   help="if another run holds --out (its .lock), wait for it instead of refusing")
    r.add_argument("--timeout", type=positive_float, default=600.0, metavar="SECONDS",
                   help="torchrun: fail a collective that waits longer than this (a dead or hung rank)")
    _debug_arg(r)


def _add_common(p: argparse.ArgumentParser, *, model: bool = True, split: str | None = "test",
                batch_size: int = 64, num_samples: int | None = 512, out: str = "fastvit-out") -> None:
    """Model, data and run options; `split=None`: the command chooses its splits (no --split)."""
    g = p.add_argument_group("model and data")
    if model:
        _model_args(g)
    _data_args(g, split=split, batch_size=batch_size, num_samples=num_samples)
    _seed_arg(g, "seed of the data subset and random directions/noise")
    _run_args(p.add_argument_group("run"), out=out)


# ------------------------------------------------------------------------------------ subcommands
SUBCOMMANDS: list[Callable[[SubParsers], None]] = []


def _subcommand(add: Callable[[SubParsers], None]) -> Callable[[SubParsers], None]:
    SUBCOMMANDS.append(add)
    return add


@_subcommand
def _add_train(sub: SubParsers) -> None:
    p = _command(sub, "train", help="train a model with the paper's recipe",
                 description="Train with the paper's CIFAR recipe (AdamW, warm-up + cosine, label "
                             "smoothing, Mixup/CutMix, RandAugment, grad clipping, DropPath). "
                             "Checkpoints go to OUT/last.pt, resumed when present and written with the "
                             "same hyper-parameters (else refused: --no-resume or --force-resume); OUT is "
                             "locked for the run. Under torchrun: DistributedDataParallel, --batch-size is "
                             "the global batch (batch-size / world size per rank), rank 0 writes.",
                 examples=("fastvit-analysis train --model demo_vit --data synthetic --epochs 20 --out runs/vit",
                           "fastvit-analysis train --model alternet50_cifar --data cifar100:~/data/cifar100 "
                           "--epochs 300 --device cuda --out runs/alternet",
                           "torchrun --nproc-per-node 4 -m fastvit_analysis train --model alternet50_cifar "
                           "--data cifar100:~/data/cifar100 --epochs 300 --device cuda --out runs/alternet"))
    _add_common(p, split=None, batch_size=96, num_samples=None, out="fastvit-train")  # trains on train, tests on test
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=10, help="training epochs")
    t.add_argument("--lr", type=positive_float, default=1.25e-4, help="peak learning rate (AdamW)")
    t.add_argument("--weight-decay", type=nonnegative_float, default=0.05, help="AdamW weight decay")
    t.add_argument("--warmup-epochs", type=int, default=None,
                   help="linear warm-up epochs (default: min(5, epochs // 10))")
    t.add_argument("--label-smoothing", type=nonnegative_float, default=0.1,
                   help="label smoothing of the cross-entropy")
    t.add_argument("--mixup", type=nonnegative_float, default=1.0, help="Mixup alpha (0: off)")
    t.add_argument("--cutmix", type=nonnegative_float, default=0.8, help="CutMix alpha (0: off)")
    t.add_argument("--randaugment", default="rand-m9-n2", help="timm RandAugment config, or 'none'")
    t.add_argument("--drop-path", type=nonnegative_float, default=None, help="DropPath rate (default: the model's)")
    t.add_argument("--grad-clip", type=positive_float, default=5.0, help="max global gradient norm")
    t.add_argument("--checkpoint-every", type=positive_int, default=1,
                   help="keep OUT/checkpoint_epoch<E>.pt every N epochs")
    t.add_argument("--max-minutes", type=positive_float, default=None,
                   help="stop (with a checkpoint) after the epoch in which this budget runs out")
    t.add_argument("--test-samples", type=positive_int, default=None,
                   help="evaluate on N test samples (default: the whole test split)")
    t.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format (faster convolutions on CPU)")
    resume = t.add_mutually_exclusive_group()
    resume.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    resume.add_argument("--force-resume", action="store_true",
                        help="continue OUT/last.pt even when its hyper-parameters differ from these (by default "
                             "a resume with other hyper-parameters is refused)")


@_subcommand
def _add_hessian(sub: SubParsers) -> None:
    p = _command(sub, "hessian", help="Hessian eigenvalues, trace, density, max-eigenvalue spectrum",
                 description="Hessian of the mean cross-entropy loss over --num-batches mini-batches of "
                             "--batch-size (BatchNorm in eval mode). Modes: 'spectrum' top-k eigenvalues "
                             "(Lanczos, with residuals), 'trace' (Hutch++), 'density' (stochastic Lanczos "
                             "quadrature), 'max-eigen' (the paper's Fig. 1c/4: top-k of each mini-batch's "
                             "Hessian, pooled). Under torchrun every mode shards the data over the ranks "
                             "(one Hessian: each product is all-reduced) and records world_size.",
                 examples=("fastvit-analysis hessian --model runs/vit/last.pt --mode max-eigen --num-batches 64 "
                           "--out runs/vit",
                           "fastvit-analysis hessian --model runs/vit/last.pt --mode spectrum --top-k 10 --which LA "
                           "--out runs/vit",
                           "torchrun --nproc-per-node 4 -m fastvit_analysis hessian --mode max-eigen "
                           "--model runs/vit/last.pt --device cuda"))
    _add_common(p, split="train", batch_size=16, num_samples=None)
    h = p.add_argument_group("hessian")
    h.add_argument("--mode", default="spectrum", choices=("spectrum", "trace", "density", "max-eigen"),
                   help="what to compute (see above)")
    h.add_argument("--num-batches", type=positive_int, default=4, help="number of mini-batches of --batch-size")
    h.add_argument("--top-k", type=positive_int, default=5, help="eigenvalues per Hessian")
    h.add_argument("--which", default="LM", choices=("LA", "SA", "LM"),
                   help="largest algebraic, smallest algebraic, or largest magnitude (signed)")
    h.add_argument("--tol", type=positive_float, default=1e-3, help="relative residual tolerance of the eigen-solver")
    h.add_argument("--max-hvp", type=positive_int, default=None,
                   help="Hessian-vector product budget per eigen-solve (spectrum: 1000, max-eigen: 300 per "
                        "mini-batch)")
    h.add_argument("--num-probes", type=positive_int, default=20, help="random probes (trace, density)")
    h.add_argument("--lanczos-steps", type=positive_int, default=40, help="Lanczos steps per probe (density)")
    h.add_argument("--weight-decay", type=nonnegative_float, default=0.0, help="adds (wd/2)|theta|^2 to the loss")
    h.add_argument("--per-pass", type=positive_int, default=8,
                   help="max-eigen: mini-batches solved together in one vmapped pass (memory grows with it)")
    h.add_argument("--augment", action="store_true", help="max-eigen: use the training augmentation (paper)")
    h.add_argument("--curvature", default="hessian", choices=("hessian", "ggn", "fisher"),
                   help="the matrix: Hessian, generalised Gauss-Newton, or empirical Fisher (spectrum, trace, "
                        "density)")
    h.add_argument("--per-block", action="store_true",
                   help="spectrum: top-k eigenvalues and trace of each block's Hessian (block_spectra), one figure")
    _no_resume_arg(h, "max-eigen: recompute every mini-batch (finished ones are kept in OUT/max_eigen_points)")


@_subcommand
def _add_landscape(sub: SubParsers) -> None:
    p = _command(sub, "landscape", help="loss landscape on filter-normalised directions",
                 description="Loss (and accuracy) at theta + a*d1 (+ b*d2) on filter-normalised random "
                             "directions (Li et al. 2018), a, b in linspace(span, steps). Finished grid points "
                             "are stored in OUT/landscape_points/ as they complete; a re-run resumes. Shards "
                             "over torchrun ranks.",
                 examples=("fastvit-analysis landscape --model runs/vit/last.pt --steps 21 --num-samples 2048 "
                           "--out runs/vit",
                           "fastvit-analysis landscape --model runs/vit/last.pt --dims 1 --span -0.5 0.5",
                           "torchrun --nproc-per-node 2 -m fastvit_analysis landscape --model runs/vit/last.pt "
                           "--out runs/vit"))
    _add_common(p, split="train", batch_size=128, num_samples=512)
    g = p.add_argument_group("landscape")
    g.add_argument("--steps", type=steps_type, default=21, help="grid points per axis")
    g.add_argument("--span", type=float, nargs="+", default=[-1.0, 1.0], metavar="S",
                   help="grid range: 'LO HI', or one S for (-S, S)")
    g.add_argument("--dims", type=int, choices=(1, 2), default=2, help="a line (1) or a plane (2)")
    g.add_argument("--norm", default="filter", choices=("filter", "axis0"),
                   help="filter normalisation: per output filter (Li et al.) or per fibre over dim 0 (paper's code)")
    g.add_argument("--l2-coef", type=nonnegative_float, default=0.0,
                   help="plot NLL + coef * sum of parameter L2 norms (paper: 0.05)")
    g.add_argument("--clip", type=positive_float, default=42.0,
                   help="clip the loss surface this far above its minimum in the figure")
    g.add_argument("--resume", dest="resume", action="store_true", default=True,
                   help="reuse finished grid points in OUT/landscape_points (on unless --no-resume)")
    _no_resume_arg(g, "recompute every grid point")


def _add_feature_maps(sub: SubParsers, name: str, what: str, fig: str) -> None:
    """fourier and variance: a statistic of every block output against depth, no options of their own."""
    p = _command(sub, name, help=what,
                 description=f"The paper's {what} ({fig}) for every block output, against normalised "
                             "depth; MSA blocks are shaded.",
                 examples=(f"fastvit-analysis {name} --model runs/vit/last.pt --num-samples 1024 --out runs/vit",
                           f"fastvit-analysis {name} --model resnet18 --data imagefolder:~/data/val --device cuda"))
    _add_common(p, split="test", batch_size=64, num_samples=512)


@_subcommand
def _add_fourier(sub: SubParsers) -> None:
    _add_feature_maps(sub, "fourier", "relative log amplitude of the feature maps' Fourier spectra", "Fig. 2a")


@_subcommand
def _add_variance(sub: SubParsers) -> None:
    _add_feature_maps(sub, "variance", "feature-map variance per block", "Fig. 9")


@_subcommand
def _add_cka(sub: SubParsers) -> None:
    p = _command(sub, "cka", help="mini-batch CKA similarity between layers",
                 description="Unbiased mini-batch linear CKA (Nguyen et al. 2021) between every pair of block "
                             "outputs of --model, or between --model and --model-b.",
                 examples=("fastvit-analysis cka --model runs/vit/last.pt --out runs/vit",
                           "fastvit-analysis cka --model runs/vit/last.pt --model-b runs/resnet/last.pt "
                           "--out runs/cross"))
    _add_common(p, split="test", batch_size=64, num_samples=512)
    p.add_argument("--model-b", default=None, help="second model (name or checkpoint) for a cross-model matrix")


@_subcommand
def _add_robustness(sub: SubParsers) -> None:
    p = _command(sub, "robustness", help="accuracy under frequency-based noise",
                 description="Accuracy change when noise restricted to a frequency band (square annulus of "
                             "half-width --bandwidth around each frequency) is added to the inputs (Fig. 2b). "
                             "Frequencies are in units of pi. Shards over torchrun ranks.",
                 examples=("fastvit-analysis robustness --model runs/vit/last.pt --eps 0.1 --out runs/vit",
                           "fastvit-analysis robustness --model runs/vit/last.pt --freqs 0.1 0.5 0.9"))
    _add_common(p, split="test", batch_size=128, num_samples=1024)
    g = p.add_argument_group("noise")
    g.add_argument("--eps", type=positive_float, default=0.1, help="noise amplitude in normalised input space")
    g.add_argument("--freqs", type=frequency, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                   metavar="F", help="band centres in units of pi")
    g.add_argument("--bandwidth", type=positive_float, default=0.2, help="annulus half-width in radians")
    _no_resume_arg(g, "recompute every frequency (finished ones are kept in OUT/robustness_points)")


@_subcommand
def _add_report(sub: SubParsers) -> None:
    p = _command(sub, "report", help="gather an --out directory into report.html",
                 description="Collect the JSON results and figures of DIR (and of its model subfolders) into "
                             "one self-contained HTML file: figures embedded, tables of the key numbers, models "
                             "side by side.",
                 examples=("fastvit-analysis report --out runs",
                           "fastvit-analysis report --out fastvit-demo --title 'My models'"))
    p.add_argument("--out", required=True, help="directory holding results (one subfolder per model)")
    p.add_argument("--html", default=None, help="report file (default: OUT/report.html)")
    p.add_argument("--title", default="fastvit-analysis report", help="title of the HTML page")
    _debug_arg(p)


@_subcommand
def _add_demo(sub: SubParsers) -> None:
    p = _command(sub, "demo", help="train 3 small models on embedded data, run everything, write the report",
                 description="Train demo_resnet, demo_vit and demo_alternet on the embedded synthetic data with a "
                             "fixed recipe (the same numbers on any machine: sizes never depend on time), run "
                             "every analysis, evaluate the paper's claims C1-C8 with 95% intervals "
                             "(OUT/claims.json) and write OUT/report.html. Re-running reuses checkpoints and "
                             "finished results.",
                 examples=("fastvit-analysis demo", "fastvit-analysis demo --quick --out /tmp/demo",
                           "fastvit-analysis demo --device cuda"))
    p.add_argument("--out", default="fastvit-demo", help="output directory")
    _device_arg(p, "'cpu' or 'cuda'")
    p.add_argument("--quick", action="store_true", help="tiny fixed recipe (a smoke test, numbers mean nothing)")
    p.add_argument("--models", nargs="+", default=["demo_resnet", "demo_vit", "demo_alternet"],
                   help="models to compare")
    p.add_argument("--fresh", action="store_true", help="ignore checkpoints and results from a previous run")
    _seed_arg(p, "seed of the data, the training and the analyses")
    _progress_arg(p)
    _debug_arg(p)


@_subcommand
def _add_selfcheck(sub: SubParsers) -> None:
    p = _command(sub, "selfcheck", help="check this install: every backend against its reference",
                 description="List the backends available here (compiled CPU extension, CUDA extension, Triton, "
                             "eager), run each feature-statistics op and fused attention (forward, backward, JVP, "
                             "double backward, vmap, fully-masked row) against torch.fft / math SDPA, and one HVP "
                             "through a small patched ViT; print a table; exit 1 on any mismatch. --bench then "
                             "runs the GPU suite (bench/gpu_suite.py, <= 8 min on one H100/H200).",
                 examples=("fastvit-analysis selfcheck", "fastvit-analysis selfcheck --bench --json selfcheck.json"))
    p.add_argument("--bench", action="store_true", help="afterwards run the GPU suite (needs CUDA)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    p.add_argument("--no-triton", action="store_true", help="skip the Triton checks")
    _debug_arg(p)


@_subcommand
def _add_reproduce(sub: SubParsers) -> None:
    p = _command(sub, "reproduce", help="the paper's CIFAR-100 study on real data (GPU), resumable",
                 description="Train ResNet-50, ViT-Ti and AlterNet-50 with the paper's recipe on --data, run every "
                             "analysis at the paper's sizes, evaluate the claims C1-C8 (OUT/claims.json) and write "
                             "OUT/report.html. Resumes stage by stage; under torchrun the sweeps shard across "
                             "ranks. --tiny runs the same stages at toy size on the synthetic data. Expected "
                             "compute: docs/reproduce.md.",
                 examples=("fastvit-analysis reproduce --data cifar100:~/data/cifar100 --device cuda --out runs/paper",
                           "torchrun --nproc-per-node 8 -m fastvit_analysis reproduce --data cifar100:~/data/cifar100 "
                           "--device cuda --out runs/paper",
                           "fastvit-analysis reproduce --tiny --out /tmp/reproduce-tiny"))
    p.add_argument("--data", default=None, help="'cifar100:/path' (required unless --tiny)")
    p.add_argument("--out", default="fastvit-reproduce", help="output directory (one subfolder per model)")
    _device_arg(p)
    p.add_argument("--tiny", action="store_true", help="toy sizes on the synthetic data (tests the whole path)")
    p.add_argument("--stages", nargs="+", default=None, metavar="STAGE",
                   help="run only these stages (train max_eigen_warmup max_eigen landscape fourier variance cka "
                        "robustness shape_bias claims)")
    _seed_arg(p, "seed of training, sampling and bootstrap")
    _progress_arg(p)
    _debug_arg(p)


# ----------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The `fastvit-analysis` parser: every registered subcommand, in the order of this file."""
    parser = _Parser(
        prog=PROG, formatter_class=_Formatter,
        description=textwrap.dedent("""\
            Fast, exact analyses of how vision models work ("How Do Vision Transformers Work?",
            Park & Kim, ICLR 2022): Hessian spectra, loss landscapes, Fourier and variance statistics
            of feature maps, mini-batch CKA, robustness to frequency-based noise.

            Every analysis writes <name>.json (the result) and <name>.png/.pdf (its figure) into --out;
            `report` gathers an --out directory (with one subfolder per model) into report.html."""),
        epilog=_examples(
            "fastvit-analysis demo                                   # train 3 small models, full report",
            "fastvit-analysis train --model demo_resnet --data synthetic --epochs 10 --out runs/resnet",
            "fastvit-analysis hessian --model runs/resnet/last.pt --mode max-eigen --out runs/resnet",
            "fastvit-analysis fourier --model runs/resnet/last.pt --out runs/resnet",
            "fastvit-analysis report --out runs",
            "torchrun --nproc-per-node 2 -m fastvit_analysis landscape --model runs/resnet/last.pt --out runs/resnet"))
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("fastvit_analysis")
    except Exception:
        return "0.1.0"

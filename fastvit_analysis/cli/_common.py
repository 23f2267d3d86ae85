"""What every subcommand shares: device and torchrun setup, loading models and data from the
command line's strings, and writing results (JSON + PNG/PDF figures) on rank 0 only."""
from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..common.distributed import is_rank_zero
from ..common.results import atomic_write_text, default_file_mode, to_jsonable
from ..common.results import read_json as _read_json
from ..common.store import FolderBusyError, OutputFolderError, check_writable, folder_lock
from .errors import CLIError

DEFAULT_TIMEOUT_S = 600.0  # torchrun collectives: a hung rank fails after 10 min, not torch's 30


# ------------------------------------------------------------------------------ device, torchrun
def resolve_device(text: str) -> torch.device:
    """'cpu' or 'cuda' (under torchrun 'cuda' means this rank's LOCAL_RANK GPU)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise CLIError(f"--device: expected 'cpu' or 'cuda', got {text!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise CLIError(f"--device: expected 'cpu' or 'cuda', got {text!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA device is available (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init_distributed(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Join the torchrun process group (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA. A collective that
    waits longer than `timeout_s` seconds (a rank died or hangs) fails instead of blocking."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import datetime as _datetime

    import torch.distributed as dist

    if not dist.is_available():
        raise CLIError("started under torchrun but this torch has no torch.distributed support")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend, "timeout": _datetime.timedelta(seconds=float(timeout_s))}
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)


def setup(args) -> torch.device:
    """Device, process group, progress switch and output directory of a subcommand."""
    if getattr(args, "no_progress", False):
        os.environ["FASTVIT_PROGRESS"] = "0"
    device = resolve_device(args.device)
    init_distributed(device, getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S)
    args.resolved_device = str(device)  # what `provenance` records as the device actually used
    if getattr(args, "seed", None) is not None:
        torch.manual_seed(args.seed)
    return device


_locks = ExitStack()  # output-folder locks held until `release_locks()` (end of main) or process exit


def out_dir(args, default: str) -> Path:
    """The output folder: created, checked writable and locked (rank 0) BEFORE anything is computed.
    A second process into the same folder is refused (or waits with --wait)."""
    path = Path(args.out if args.out else default).expanduser()
    if path.exists() and not path.is_dir():
        raise CLIError(f"--out {str(path)!r} exists and is not a directory")
    if is_rank_zero():
        try:
            check_writable(path, name="--out")
            _locks.enter_context(folder_lock(path, wait=bool(getattr(args, "wait", False)), name="--out"))
        except OutputFolderError as e:
            raise CLIError(str(e.strerror or e)) from None
        except FolderBusyError as e:
            raise CLIError(str(e).replace("(--wait / wait=True)", "(--wait)")) from None
    return path


def release_locks() -> None:
    """Release the output-folder locks taken by `out_dir` (called when a command ends)."""
    _locks.close()


@contextmanager
def cli_errors() -> Iterator[None]:
    """Library errors in the CLI's terms: a stale output folder names --no-resume (not resume=False);
    an OSError (read-only, disk full, I/O) becomes one line naming the file."""
    from ..sweep import StaleResultsError

    try:
        yield
    except StaleResultsError as e:
        raise CLIError(e.fix("--no-resume")) from None
    except (FolderBusyError, OutputFolderError) as e:
        raise CLIError(str(e).replace("(--wait / wait=True)", "(--wait)")) from None


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    info = {"seconds": 0.0}
    start = time.perf_counter()
    try:
        yield info
    finally:
        info["seconds"] = time.perf_counter() - start


# ----------------------------------------------------------------------------------------- data
def parse_data_spec(spec: str):
    """Check 'synthetic' | 'cifar10:/path' | 'cifar100:/path' | 'imagefolder:/path' before loading anything."""
    from ..data import parse_spec

    parsed = parse_spec(spec)
    if parsed.path is not None and not parsed.path.exists():
        raise CLIError(f"--data: path {str(parsed.path)!r} does not exist (data is never downloaded)")
    return parsed


def build_loader(spec: str, split: str, batch_size: int, *, num_samples: int | None = None,
                 seed: int = 0, train: bool = False):
    from .. import data as data_module

    return data_module.build_loader(spec, split, batch_size, train=train,
                                    num_samples=num_samples, seed=seed)


def num_classes_of(spec: str) -> int:
    """Classes of a data set: from its spec, else from the data set's class list."""
    parsed = parse_data_spec(spec)
    if parsed.num_classes:
        return int(parsed.num_classes)
    from .. import data as data_module

    dataset = data_module.build_dataset(spec, "test")
    classes = getattr(dataset, "classes", None)
    if classes is None:
        raise CLIError(f"--data {spec!r}: cannot tell the number of classes")
    return len(classes)


# --------------------------------------------------------------------------------------- models
def looks_like_checkpoint(text: str) -> bool:
    from ..models.factory import is_checkpoint_path

    return is_checkpoint_path(text)


def model_label(text: str) -> str:
    """A short name for tables: the model name, or the folder of a checkpoint."""
    if looks_like_checkpoint(text):
        path = Path(text).expanduser()
        return path.parent.name or path.stem
    return text


def check_model_arg(text: str, option: str = "--model") -> None:
    """Fail fast (before any data is built) on an unknown model name or a missing checkpoint."""
    import timm

    if looks_like_checkpoint(text):
        if not Path(text).expanduser().is_file():
            raise CLIError(f"{option}: checkpoint {text!r} does not exist")
    elif not text or not timm.is_model(text):
        from .. import models

        models.create(text)  # raises the registry's ValueError naming close matches


def load_model(text: str, *, num_classes: int | None, device: torch.device,
               checkpoint: str | None = None, option: str = "--model", img_size: int | None = None) -> nn.Module:
    """A model from a timm name (built for `num_classes`, and for `img_size` when given: the side of a
    'synthetic:SIZE' spec) or from a checkpoint written by `train`; `checkpoint` loads a checkpoint's
    weights into the architecture named by `text`."""
    from .. import models

    if looks_like_checkpoint(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise CLIError(f"{option}: checkpoint {str(path)!r} does not exist")
        if checkpoint is not None:
            raise CLIError(f"--checkpoint goes with a model name, but {option} is already a checkpoint ({text})")
        model = models.create(str(path))
    elif checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CLIError(f"--checkpoint: {str(path)!r} does not exist")
        model = models.create(str(path), model_name=text)
    else:
        if not text:
            raise CLIError(f"{option}: expected a model name or a checkpoint path")
        model = models.create(text, **({"num_classes": num_classes} if num_classes else {}),
                              **({"img_size": img_size} if img_size else {}))
    model_classes = getattr(model, "num_classes", None)
    if num_classes and isinstance(model_classes, int) and model_classes != num_classes:
        raise CLIError(f"{option} {text!r} predicts {model_classes} classes but the data has {num_classes}")
    return model.to(device).eval()


def loss_fn() -> nn.Module:
    return nn.CrossEntropyLoss()


# -------------------------------------------------------------------------------------- writing
def write_json(path: Path, payload: dict[str, Any]) -> Path | None:
    """Write a JSON payload on rank 0 (other ranks return None)."""
    if not is_rank_zero():
        return None
    atomic_write_text(path, json.dumps(to_jsonable(payload), indent=2))
    return path


def write_result_or_keep(path: Path, payload: dict[str, Any]) -> tuple[Path | None, str | None]:
    """Write `payload` to `path` (rank 0); if that fails (OSError), keep the finished result in a file
    in the temporary folder instead. Returns (where it was written, error text or None)."""
    try:
        return write_json(path, payload), None
    except OSError as e:
        reason = f"could not write {path} ({e.strerror or e})"
    try:
        fd, spare = tempfile.mkstemp(prefix=f"fastvit-{path.stem}-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(to_jsonable(payload), indent=2))
        return Path(spare), f"{reason}; the result was kept in {spare}"
    except OSError:
        return None, f"{reason}; the summary above is all that was kept"


def save_figure(fig, out: Path, stem: str) -> list[str]:
    """Save `fig` as OUT/stem.png and OUT/stem.pdf on rank 0 (each through a uniquely named temporary
    file, given the umask's mode); returns the file names written."""
    from ..plot.style import close

    names: list[str] = []
    try:
        if is_rank_zero():
            for ext in ("png", "pdf"):
                target = out / f"{stem}.{ext}"
                fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{stem}.", suffix=f".tmp.{ext}")
                try:
                    with os.fdopen(fd, "wb") as f:
                        fig.savefig(f, format=ext, dpi=120 if ext == "png" else None, bbox_inches="tight")
                        os.fchmod(f.fileno(), default_file_mode())
                    os.replace(tmp, target)
                except BaseException:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                    raise
                names.append(target.name)
    finally:
        close(fig)
    return names


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it cannot be read or parsed."""
    try:
        return _read_json(path)
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------- provenance
def _sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def provenance(args, *, device: torch.device | str | None = None, num_samples: int | None = None) -> dict[str, Any]:
    """What a result JSON needs to describe itself: versions, UTC time, device, world size, checkpoint
    (path, sha256, epoch) when one was loaded, data spec and number of samples."""
    from ..common.provenance import environment

    checkpoint = None
    source = getattr(args, "checkpoint", None) or (getattr(args, "model", None) if looks_like_checkpoint(
        str(getattr(args, "model", "") or "")) else None)
    if source:
        path = Path(source).expanduser()
        epoch = None
        if path.is_file():
            try:
                meta = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
                epoch = meta.get("epoch") if isinstance(meta, dict) else None
            except Exception:
                epoch = None
        checkpoint = {"path": str(path.resolve()) if path.exists() else str(path),
                      "sha256": _sha256_file(path) if path.is_file() else None,
                      "epoch": epoch if isinstance(epoch, int) else None}
    return {
        **environment(),
        "device": (str(device) if device is not None
                   else getattr(args, "resolved_device", getattr(args, "device", None))),
        "checkpoint": checkpoint, "data": {"spec": getattr(args, "data", None), "num_samples": num_samples},
    }

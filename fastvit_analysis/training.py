"""`train`: the paper's CIFAR recipe with timm's components, checkpointed, resumable, logged.

Recipe (SPEC §4): AdamW (lr 1.25e-4, wd 0.05), batch 96, linear warm-up then cosine decay (per step),
gradient clipping 5, label smoothing 0.1, Mixup 1.0 / CutMix 0.8, RandAugment m9-n2, random crop (pad 4)
+ horizontal flip, DropPath. Every piece can be switched off (0, None or False).

Example:
    >>> import fastvit_analysis as fa
    >>> result = fa.train("demo_resnet", "synthetic", epochs=1, num_samples=64, batch_size=32,
    ...                   mixup=0, cutmix=0, randaugment=None, progress=False)  # doctest: +SKIP
    >>> result.history[-1]["train_loss"]  # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .common.batches import is_single_batch, iter_batches, materialize_batches, model_device
from .common.modes import eval_mode
from .common.outputs import OutputFn, check_output_fn, model_logits
from .common.progress import progress_bar
from .common.results import Result, atomic_write_text

__all__ = ["train", "evaluate", "TrainResult", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "fastvit_analysis.checkpoint/1"


@dataclass
class TrainResult(Result):
    """Outcome of `train`.

    Attributes:
        history: one dict per completed epoch: epoch, train_loss, train_acc, lr, test_loss, test_acc
            (None without test data), samples, seconds.
        epochs_completed: last completed epoch (counting from 1).
        out: output folder (None when nothing was written); last_checkpoint: path of out/last.pt.
        resumed_from_epoch: epoch restored from out/last.pt (None for a fresh run).
        stopped_early: True when `max_minutes` ended the run before `epochs`.
        model: the trained model (not serialised).
    """

    history: list[dict[str, Any]]
    epochs_completed: int
    out: str | None = None
    last_checkpoint: str | None = None
    resumed_from_epoch: int | None = None
    stopped_early: bool = False
    elapsed_s: float = 0.0
    model_name: str | None = None
    model: nn.Module | None = field(default=None, repr=False, metadata={"serialize": False})

    @property
    def final_metrics(self) -> dict[str, Any]:
        return dict(self.history[-1]) if self.history else {}


# ----------------------------------------------------------------------------------------------- data
def _num_classes(model: nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear):
        return head.out_features
    raise ValueError("train: cannot tell the model's number of classes (no .num_classes or Linear classifier); "
                     "set model.num_classes")


def _random_crop_flip(x: Tensor, pad: int = 4) -> Tensor:
    """Per-sample random crop from a zero-padded copy + horizontal flip, on a (B, C, H, W) batch."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    flip = torch.rand(b) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


class _TrainBatches:
    """Training batches for one epoch from a data spec, a Dataset, a DataLoader/iterable, or one batch."""

    def __init__(self, data: Any, *, batch_size: int, randaugment: str | None, crop_flip: bool,
                 num_samples: int | None, seed: int, num_workers: int) -> None:
        self.tensor_augment = False
        self.spec_num_classes: int | None = None
        self.loader: Iterable | None = None
        self.dataset: Dataset | None = None
        if isinstance(data, str):
            from .data import build_dataset, build_transform, parse_spec

            spec = parse_spec(data)
            self.spec_num_classes = spec.num_classes
            transform = build_transform(spec, train=True, randaugment=randaugment, crop=crop_flip, flip=crop_flip)
            self.dataset = build_dataset(data, "train", transform=transform, num_samples=num_samples, seed=seed)
        else:
            if num_samples is not None:
                raise ValueError("train: num_samples applies only to a data spec string")
            if randaugment:
                warnings.warn("train: RandAugment needs PIL images and is applied only when train_data is a data "
                              "spec string ('synthetic', 'cifar10:/path', ...); it is skipped here", stacklevel=3)
            self.tensor_augment = crop_flip
            if is_single_batch(data):
                self.dataset = TensorDataset(data[0], data[1])
            elif isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
                self.dataset = data
            else:
                self.loader = data if hasattr(data, "__len__") else materialize_batches(data, name="train_data")
        if self.dataset is not None:
            if len(self.dataset) == 0:  # type: ignore[arg-type]
                raise ValueError("train_data is empty")
            self.generator = torch.Generator()
            # drop the last partial batch: Mixup needs even batches and BatchNorm more than one sample
            drop_last = len(self.dataset) >= batch_size  # type: ignore[arg-type]
            self.loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                                     generator=self.generator, num_workers=num_workers)
        if len(self.loader) == 0:  # type: ignore[arg-type]
            raise ValueError("train_data is empty")

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def epoch(self, seed: int) -> Iterable[tuple[Tensor, Tensor]]:
        if self.dataset is not None:
            self.generator.manual_seed(seed)
        for x, y in iter_batches(self.loader, name="train_data"):
            yield (_random_crop_flip(x) if self.tensor_augment and x.ndim == 4 else x), y


def _test_batches(data: Any, batch_size: int, num_workers: int) -> Any:
    if data is None:
        return None
    if isinstance(data, str):
        from .data import build_loader

        return build_loader(data, "test", batch_size=max(batch_size, 256), num_workers=num_workers)
    if isinstance(data, Dataset) and not is_single_batch(data):
        return DataLoader(data, batch_size=max(batch_size, 256), shuffle=False, num_workers=num_workers)
    return data


@torch.no_grad()
def evaluate(model: nn.Module, data: Any, *, device: str | torch.device | None = None,
             output_fn: OutputFn | None = None) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy of `model` (eval mode) over `data` (a batch or an iterable).
    `output_fn` picks the logits of a dict/tuple/ModelOutput forward (default rule: common/outputs.py).

    Returns {"loss": float, "acc": float in [0, 1], "samples": int}. Example:
        >>> evaluate(model, (x, y))  # doctest: +SKIP
    """
    device = model_device(model) if device is None else torch.device(device)
    check_output_fn(output_fn)
    total_loss, correct, count = 0.0, 0, 0
    with eval_mode(model):
        for x, y in iter_batches(data, device=device, name="test_data"):
            logits = model_logits(model(x), output_fn)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += y.shape[0]
    return {"loss": total_loss / count, "acc": correct / count, "samples": count}


# ------------------------------------------------------------------------------------------ training
def _set_drop_path(model: nn.Module, rate: float) -> int:
    """Set DropPath rates increasing linearly from 0 to `rate` over the model's DropPath modules."""
    from timm.layers import DropPath

    modules = [m for m in model.modules() if isinstance(m, DropPath)]
    for i, m in enumerate(modules):
        m.drop_prob = rate * i / max(len(modules) - 1, 1)
    return len(modules)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _checkpoint(model, optimizer, scheduler, epoch, history, spec, config) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_name": spec.get("model_name"),
            "model_kwargs": spec.get("model_kwargs", {}), "epoch": epoch, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "metrics": list(history),
            "config": config, "rng": _rng_state()}


def _save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _check_positive(name: str, value: Any, *, allow_zero: bool = True, integer: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (value < 0 if allow_zero else value <= 0) or \
            (isinstance(value, float) and not math.isfinite(value)):
        kind = "int" if integer else "number"
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} {kind}, got {value!r}")


def train(model: nn.Module | str, train_data: Any, *, test_data: Any = None, epochs: int,
          lr: float = 1.25e-4, weight_decay: float = 0.05, warmup_epochs: int | None = None,
          batch_size: int = 96, label_smoothing: float = 0.1, mixup: float = 1.0, cutmix: float = 0.8,
          randaugment: str | None = "rand-m9-n2", crop_flip: bool = True, grad_clip: float | None = 5.0,
          drop_path: float | None = None, out: str | os.PathLike | None = None, checkpoint_every: int = 1,
          resume: bool = True, device: str | torch.device = "cpu", progress: bool = True,
          max_minutes: float | None = None, seed: int = 0, num_samples: int | None = None,
          num_workers: int = 0, channels_last: bool = False,
          model_kwargs: dict[str, Any] | None = None) -> TrainResult:
    """Train `model` with the paper's recipe; checkpoint every `checkpoint_every` epochs; resume from out/last.pt.

    Args:
        model: an nn.Module, or a timm name / checkpoint path (built with `fastvit_analysis.models.create`,
            `model_kwargs` passed on).
        train_data: a data spec string ("synthetic", "cifar10:/path", ...; augmentation done per image:
            crop + flip + RandAugment), a Dataset, a DataLoader / iterable of (x, y) batches, or one (x, y)
            batch (tensor inputs get crop + flip per batch; RandAugment needs a spec string).
        test_data: evaluated after every epoch (spec string: its "test" split), optional.
        epochs: total epochs, warm-up included (the paper: 5 warm-up + 300 cosine = `epochs=305`).
        warmup_epochs: linear warm-up epochs; default min(5, epochs // 10).
        mixup, cutmix: Beta-distribution alphas of timm's Mixup (0 switches each off); with either on the
            loss is SoftTargetCrossEntropy on smoothed mixed targets, else (label-smoothed) cross-entropy.
        randaugment: timm RandAugment config ("rand-m9-n2") or None.
        grad_clip: max global gradient norm, or None. drop_path: set DropPath rates (linear in depth up to
            this value), or None to keep the model's.
        out: folder for checkpoint_epoch{E}.pt (E = 0 is the initialisation), last.pt and metrics.jsonl;
            None writes nothing. resume: continue from out/last.pt when it exists.
        max_minutes: stop after the epoch during which this wall-clock budget runs out.
        seed: seeds shuffling, augmentation, Mixup and DropPath per epoch (a resumed run reproduces an
            uninterrupted one on CPU). The caller's global RNG states are restored on return.
        channels_last: train in channels-last memory format (about 2× faster convolutions on CPU); the model
            is returned in the default format.

    Returns:
        TrainResult with per-epoch history and the trained model (eval mode).

    Raises:
        ValueError: bad hyper-parameters, empty data, more classes in the data than model outputs, or an
            out/last.pt that belongs to another model.
    """
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.scheduler import CosineLRScheduler

    from .models import create, model_spec

    if isinstance(model, str):
        model = create(model, **(model_kwargs or {}))
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or a model name / checkpoint path, got {type(model).__name__}")
    _check_positive("epochs", epochs, allow_zero=False, integer=True)
    _check_positive("batch_size", batch_size, allow_zero=False, integer=True)
    _check_positive("lr", lr, allow_zero=False)
    _check_positive("weight_decay", weight_decay)
    _check_positive("checkpoint_every", checkpoint_every, integer=True)
    for name, value in (("label_smoothing", label_smoothing), ("mixup", mixup), ("cutmix", cutmix)):
        _check_positive(name, value)
    if label_smoothing >= 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if grad_clip is not None:
        _check_positive("grad_clip", grad_clip, allow_zero=False)
    if drop_path is not None and not 0 <= drop_path < 1:
        raise ValueError(f"drop_path must be in [0, 1) or None, got {drop_path!r}")
    if max_minutes is not None:
        _check_positive("max_minutes", max_minutes, allow_zero=False)
    if warmup_epochs is None:
        warmup_epochs = min(5, epochs // 10)
    _check_positive("warmup_epochs", warmup_epochs, integer=True)
    if warmup_epochs >= epochs and epochs > 1:
        raise ValueError(f"warmup_epochs ({warmup_epochs}) must be smaller than epochs ({epochs})")

    device = torch.device(device)
    model.to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model.to(memory_format=memory_format)
    num_classes = _num_classes(model)
    batches = _TrainBatches(train_data, batch_size=batch_size, randaugment=randaugment, crop_flip=crop_flip,
                            num_samples=num_samples, seed=seed, num_workers=num_workers)
    if batches.spec_num_classes is not None and batches.spec_num_classes > num_classes:
        raise ValueError(f"train_data {train_data!r} has {batches.spec_num_classes} classes but the model has "
                         f"{num_classes} outputs; build it with num_classes={batches.spec_num_classes}")
    test_batches = _test_batches(test_data, batch_size, num_workers)
    if drop_path is not None and _set_drop_path(model, drop_path) == 0 and drop_path > 0:
        warnings.warn("train: drop_path given but the model has no DropPath module; build it with "
                      "drop_path_rate=... instead", stacklevel=2)

    spec = model_spec(model) or {"model_name": None, "model_kwargs": {}}
    config = dict(epochs=epochs, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                  batch_size=batch_size, label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix,
                  randaugment=randaugment, crop_flip=crop_flip, grad_clip=grad_clip, drop_path=drop_path,
                  seed=seed, num_samples=num_samples,
                  train_data=train_data if isinstance(train_data, str) else type(train_data).__name__,
                  test_data=test_data if isinstance(test_data, str) or test_data is None else type(test_data).__name__)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = len(batches)
    scheduler = CosineLRScheduler(optimizer, t_initial=max((epochs - warmup_epochs) * steps, 1), lr_min=lr * 1e-2,
                                  warmup_t=warmup_epochs * steps, warmup_lr_init=lr * 1e-2, warmup_prefix=True,
                                  t_in_epochs=False)
    mixing = mixup > 0 or cutmix > 0
    mixer = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing,
                  num_classes=num_classes) if mixing else None
    if mixing:
        criterion: nn.Module = SoftTargetCrossEntropy()
    elif label_smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=label_smoothing)
    else:
        criterion = nn.CrossEntropyLoss()

    out_dir = Path(out) if out is not None else None
    history: list[dict[str, Any]] = []
    start_epoch, resumed_from = 0, None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        last = out_dir / "last.pt"
        if resume and last.is_file():
            start_epoch, history = _resume(last, model, optimizer, scheduler, spec)
            resumed_from = start_epoch
        elif checkpoint_every:
            _save(_checkpoint(model, optimizer, scheduler, 0, history, spec, config), out_dir / "checkpoint_epoch0.pt")

    started = time.monotonic()
    stopped_early = False
    outer_rng = _rng_state()  # restored at the end: seeding per epoch must not leak into the caller
    for epoch in range(start_epoch + 1, epochs + 1):
        _seed_everything(seed * 100_003 + epoch)
        model.train()
        total_loss, correct, count = 0.0, 0, 0
        epoch_start = time.monotonic()
        bar = progress_bar(batches.epoch(seed * 100_003 + epoch), total=steps, desc=f"epoch {epoch}/{epochs}",
                           progress=progress)
        for step, (x, y) in enumerate(bar):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=memory_format)
            if y.numel() and int(y.max()) >= num_classes:
                raise ValueError(f"train_data has label {int(y.max())} but the model has {num_classes} outputs")
            if mixer is not None:
                if x.shape[0] % 2:  # timm's Mixup pairs samples: use an even batch
                    x, y = x[:-1], y[:-1]
                if x.shape[0] == 0:
                    continue
                inputs, targets = mixer(x, y)
            else:
                inputs, targets = x, y
            logits = model(inputs)
            loss = criterion(logits, targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train: loss became {loss.item()} at epoch {epoch}, step {step}; "
                                         f"lower lr (now {lr}) or enable grad_clip")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step_update((epoch - 1) * steps + step + 1)
            total_loss += loss.item() * x.shape[0]
            correct += (logits.argmax(-1) == y).sum().item()
            count += x.shape[0]
            bar.set_postfix(loss=f"{total_loss / count:.4f}", refresh=False)
        bar.close()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": total_loss / max(count, 1),
                                  "train_acc": correct / max(count, 1), "lr": optimizer.param_groups[0]["lr"],
                                  "test_loss": None, "test_acc": None, "samples": count}
        if test_batches is not None:
            metrics = evaluate(model, test_batches, device=device)
            record["test_loss"], record["test_acc"] = metrics["loss"], metrics["acc"]
        record["seconds"] = time.monotonic() - epoch_start
        history.append(record)
        if out_dir is not None:
            ckpt = _checkpoint(model, optimizer, scheduler, epoch, history, spec, config)
            if checkpoint_every and epoch % checkpoint_every == 0:
                _save(ckpt, out_dir / f"checkpoint_epoch{epoch}.pt")
            _save(ckpt, out_dir / "last.pt")
            atomic_write_text(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        if max_minutes is not None and epoch < epochs and time.monotonic() - started > 60 * max_minutes:
            stopped_early = True
            break

    _restore_rng(outer_rng)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    completed = history[-1]["epoch"] if history else start_epoch
    return TrainResult(history=history, epochs_completed=completed, out=str(out_dir) if out_dir else None,
                       last_checkpoint=str(out_dir / "last.pt") if out_dir and (out_dir / "last.pt").exists() else None,
                       resumed_from_epoch=resumed_from, stopped_early=stopped_early,
                       elapsed_s=time.monotonic() - started, model_name=spec.get("model_name"), model=model)


def _resume(path: Path, model: nn.Module, optimizer, scheduler, spec: dict[str, Any]) -> tuple[int, list]:
    from .models.factory import _describe, _state_dict_mismatch, load_checkpoint

    ckpt = load_checkpoint(path)
    stored = ckpt.get("model_name")
    if stored and spec.get("model_name") and stored != spec["model_name"]:
        raise ValueError(f"cannot resume: {str(path)!r} holds a {stored!r} model, not {spec['model_name']!r} "
                         f"(use another out folder or resume=False)")
    missing, unexpected = _state_dict_mismatch(model, ckpt["model"])
    if missing or unexpected:
        raise ValueError(f"cannot resume: {str(path)!r} does not match the model: {_describe(missing, unexpected)}")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"cannot resume: {str(path)!r} does not match the model: {str(exc).splitlines()[-1]}") \
            from None
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    return int(ckpt["epoch"]), list(ckpt.get("metrics") or [])

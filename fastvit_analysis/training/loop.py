"""`train` and `evaluate`: the epoch loop of the recipe, data-parallel under torchrun.

Example (a linear classifier on one batch of 16 images; `train("demo_resnet", "synthetic", ...)` takes
a model name and a data spec the same way):
    >>> import torch
    >>> from torch import nn
    >>> import fastvit_analysis as fa
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> model.num_classes = 2
    >>> batch = (torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,)))
    >>> result = fa.train(model, batch, epochs=2, batch_size=8, mixup=0, cutmix=0, randaugment=None, progress=False)
    >>> [h["epoch"] for h in result.history], result.history[-1]["samples"]
    ([1, 2], 16)
"""
from __future__ import annotations

import math
import os
import random
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common.batches import iter_batches, model_device
from ..common.deprecation import renamed_kwargs
from ..common.distributed import is_rank_zero, rank, world_size
from ..common.modes import eval_mode
from ..common.outputs import OutputFn, check_output_fn, model_logits
from ..common.progress import progress_bar
from .batches import TrainBatches, num_classes_of, shard_batches, test_batches
from .checkpoint import check_resume_arg, make_checkpoint, read_resumable, restore, run_config
from .distributed import any_rank, from_rank_zero, sum_over_ranks, unwrap, wrap_data_parallel
from .output import OutputFolder
from .recipe import Recipe, _check_number, build_criterion, build_mixer, build_optimizer, build_scheduler
from .result import TrainResult

__all__ = ["train", "evaluate"]


@torch.no_grad()
def evaluate(model: nn.Module, data: Any, *, device: str | torch.device | None = None,
             shard: bool = False, output_fn: OutputFn | None = None) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy (%) of `model` (eval mode) over `data` (a batch or an iterable).
    `output_fn` picks the logits of a dict/tuple/ModelOutput forward (default rule: common/outputs.py).

    shard=True (under torchrun, called on every rank): rank r takes batches r, r + W, ...; the sums are
    added over ranks, so every sample counts once and every rank returns the one-process numbers.
    Returns {"loss": float, "acc": percent in [0, 100], "samples": int}. Example:
        >>> import torch
        >>> evaluate(torch.nn.Linear(2, 2), (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)))["samples"]
        4
    """
    device = model_device(model) if device is None else torch.device(device)
    check_output_fn(output_fn)
    # a rank's share may hold no batch (fewer batches than ranks): it then adds zeros to the sums
    batches = list(shard_batches(data, rank(), world_size())) if shard else data
    total_loss, correct, count = 0.0, 0, 0
    with eval_mode(model):
        for x, y in (iter_batches(batches, device=device, name="test_data") if not shard or batches else ()):
            logits = model_logits(model(x), output_fn)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += y.shape[0]
    if shard:
        total_loss, correct, count = sum_over_ranks([total_loss, correct, count], device)
        correct, count = int(round(correct)), int(round(count))
    if count == 0:
        raise ValueError("test_data is empty: evaluation saw 0 samples")
    return {"loss": total_loss / count, "acc": 100.0 * correct / count, "samples": count}


# ------------------------------------------------------------------------------------------ helpers
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


def _build_model(model: nn.Module | str, model_kwargs: dict[str, Any] | None) -> nn.Module:
    from ..models import create

    if isinstance(model, str):
        return create(model, **(model_kwargs or {}))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or a model name / checkpoint path, got {type(model).__name__}")
    return model


class _EpochRunner:
    """One epoch of optimisation: forward, loss, backward (gradients averaged over ranks by DDP), clip, step."""

    def __init__(self, net: nn.Module, optimizer, scheduler, recipe: Recipe, num_classes: int,
                 device: torch.device, memory_format: torch.memory_format | None) -> None:
        self.net, self.optimizer, self.scheduler, self.recipe = net, optimizer, scheduler, recipe
        self.num_classes, self.device, self.memory_format = num_classes, device, memory_format
        self.mixer = build_mixer(recipe, num_classes)
        self.criterion = build_criterion(recipe)

    def run(self, batches: TrainBatches, epoch: int, *, progress: bool) -> dict[str, float]:
        """Returns the sums over ranks: {"loss": mean train loss, "acc": %, "samples": count}."""
        self.net.train()
        steps = len(batches)
        total_loss, correct, count = 0.0, 0, 0
        bar = progress_bar(batches.epoch(epoch), total=steps, desc=f"epoch {epoch}/{self.recipe.epochs}",
                           progress=progress and is_rank_zero())
        for step, (x, y) in enumerate(bar):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.memory_format is not None and x.ndim == 4:
                x = x.contiguous(memory_format=self.memory_format)
            if y.numel() and int(y.max()) >= self.num_classes:
                raise ValueError(f"data has label {int(y.max())} but the model has {self.num_classes} outputs")
            if self.mixer is not None and x.shape[0] % 2:  # timm's Mixup pairs samples: use an even batch
                x, y = x[:-1], y[:-1]
            if x.shape[0] == 0:
                continue
            inputs, targets = self.mixer(x, y) if self.mixer is not None else (x, y)
            logits = self.net(inputs)
            loss = self.criterion(logits, targets)
            # every rank stops together, else the others would wait in the next all-reduce
            if any_rank(not bool(torch.isfinite(loss)), self.device):
                raise FloatingPointError(f"train: the loss diverged ({loss.item()} on rank {rank()}) at epoch "
                                         f"{epoch}, step {step}; lower lr (now {self.recipe.lr}) or enable grad_clip")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.recipe.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.recipe.grad_clip)
            self.optimizer.step()
            self.scheduler.step_update((epoch - 1) * steps + step + 1)
            total_loss += loss.item() * x.shape[0]
            correct += (logits.argmax(-1) == y).sum().item()
            count += x.shape[0]
            bar.set_postfix(loss=f"{total_loss / count:.4f}", refresh=False)
        bar.close()
        total_loss, correct, count = sum_over_ranks([total_loss, correct, count], self.device)
        count = int(round(count))
        if count == 0:
            raise ValueError(f"train: epoch {epoch} saw 0 training samples (batches of one sample are dropped with "
                             f"Mixup/CutMix, which pair samples); give more data or a larger batch_size")
        return {"loss": total_loss / count, "acc": 100.0 * correct / count, "samples": count}


# ------------------------------------------------------------------------------------------ train
@renamed_kwargs(train_data="data")
def train(model: nn.Module | str, data: Any, *, test_data: Any = None, epochs: int,
          lr: float = 1.25e-4, weight_decay: float = 0.05, warmup_epochs: int | None = None,
          batch_size: int = 96, label_smoothing: float = 0.1, mixup: float = 1.0, cutmix: float = 0.8,
          randaugment: str | None = "rand-m9-n2", crop_flip: bool = True, grad_clip: float | None = 5.0,
          drop_path: float | None = None, out: str | os.PathLike | None = None, checkpoint_every: int = 1,
          resume: bool | str = True, device: str | torch.device = "cpu", progress: bool = True,
          max_minutes: float | None = None, seed: int = 0, num_samples: int | None = None,
          num_workers: int = 0, channels_last: bool = False,
          model_kwargs: dict[str, Any] | None = None) -> TrainResult:
    """Train `model` with the paper's recipe; checkpoint every `checkpoint_every` epochs; resume from out/last.pt.

    Under torchrun (an initialised process group) the model is wrapped in DistributedDataParallel, each
    rank reads its DistributedSampler shard, test batches are split over ranks (each sample once), and
    rank 0 alone writes files. `batch_size` is the global batch (batch_size / world_size per rank), so the
    loss curve and the schedule match a one-process run, and a run resumes at any world size.

    Args:
        model: an nn.Module, or a timm name / checkpoint path (built with `fastvit_analysis.models.create`,
            `model_kwargs` passed on).
        data: the training data: a data spec string ("synthetic", "cifar10:/path", ...; augmentation done per image:
            crop + flip + RandAugment), a Dataset, one (x, y) batch (tensor inputs get crop + flip per batch;
            RandAugment needs a spec string), or (one process only) a DataLoader / iterable of batches.
        test_data: evaluated after every epoch (spec string: its "test" split), optional.
        epochs: total epochs, warm-up included (the paper: 5 warm-up + 300 cosine = `epochs=305`).
        warmup_epochs: linear warm-up epochs; default min(5, epochs // 10).
        mixup, cutmix: Beta-distribution alphas of timm's Mixup (0 switches each off); with either on the
            loss is SoftTargetCrossEntropy on smoothed mixed targets, else (label-smoothed) cross-entropy.
        randaugment: timm RandAugment config ("rand-m9-n2") or None.
        grad_clip: max global gradient norm, or None. drop_path: set DropPath rates (linear in depth up to
            this value), or None to keep the model's.
        out: folder for checkpoint_epoch{E}.pt (E = 0 is the initialisation), last.pt and metrics.jsonl;
            None writes nothing. The folder is locked (out/.lock) for the run: a second process refuses.
        resume: True continues from out/last.pt when its hyper-parameters (model, data, recipe, seed) equal
            this call's and refuses naming the differences otherwise; False starts over; "force" continues
            even when they differ.
        max_minutes: stop after the epoch during which this wall-clock budget runs out.
        seed: seeds shuffling, augmentation, Mixup and DropPath per epoch (a resumed run reproduces an
            uninterrupted one on CPU). The caller's global RNG states are restored on return.
        channels_last: train in channels-last memory format (for faster convolutions on CPU; no stored
            measurement, see bench/results/README.md); the model is returned in the default format.

    Returns:
        TrainResult with per-epoch history (accuracies in percent) and the trained model (eval mode).

    Raises:
        ValueError: bad hyper-parameters, empty data, an epoch with 0 samples, more classes in the data than
            model outputs, or an out/last.pt of another model (ResumeMismatchError: other hyper-parameters).
        FloatingPointError: the training or test loss is not finite.
        FolderBusyError: another process is training into `out`. OSError: `out` is not writable.
    """
    model = _build_model(model, model_kwargs)
    recipe = Recipe(epochs=epochs, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                    batch_size=batch_size, label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix,
                    randaugment=randaugment, crop_flip=crop_flip, grad_clip=grad_clip, drop_path=drop_path, seed=seed)
    _check_number("checkpoint_every", checkpoint_every, integer=True)
    if max_minutes is not None:
        _check_number("max_minutes", max_minutes, allow_zero=False)
    check_resume_arg(resume)
    with ExitStack() as stack:
        held: dict[str, OutputFolder] = {}  # rank 0 alone holds the folder (and its lock)

        def hold() -> None:
            held["folder"] = stack.enter_context(OutputFolder(out))

        if out is not None:
            from_rank_zero(hold)
        folder = held.get("folder")
        return _train(model, recipe, data, test_data, folder, Path(out) if out is not None else None,
                      checkpoint_every=checkpoint_every, resume=resume, device=torch.device(device),
                      progress=progress, max_minutes=max_minutes, num_samples=num_samples,
                      num_workers=num_workers, channels_last=channels_last)


def _train(model: nn.Module, recipe: Recipe, train_data: Any, test_data: Any, folder: OutputFolder | None,
           out: Path | None, *, checkpoint_every: int, resume: bool | str, device: torch.device, progress: bool,
           max_minutes: float | None, num_samples: int | None, num_workers: int,
           channels_last: bool) -> TrainResult:
    from ..models import model_spec

    world = world_size()
    model.to(device)
    memory_format = torch.channels_last if channels_last else None
    if memory_format is not None:
        model.to(memory_format=memory_format)
    num_classes = num_classes_of(model)
    batches = _training_batches(model, recipe, train_data, num_classes, num_samples, num_workers, world)
    evaluation = test_batches(test_data, recipe.batch_size, num_workers)

    spec = model_spec(model) or {"model_name": None, "model_kwargs": {}}
    config = run_config(recipe.to_dict(), spec, train_data, num_samples)
    optimizer = build_optimizer(model, recipe)
    steps = len(batches)
    scheduler = build_scheduler(optimizer, recipe, steps)

    history: list[dict[str, Any]] = []
    start_epoch, resumed_from = 0, None
    if out is not None:
        ckpt = from_rank_zero(lambda: read_resumable(out, resume, config, recipe.epochs))
        if ckpt is not None:
            start_epoch, history = restore(ckpt, model, optimizer, scheduler, str(out / "last.pt"))
            resumed_from = start_epoch
        elif checkpoint_every:
            from_rank_zero(lambda: folder.save_torch(  # type: ignore[union-attr]
                "checkpoint_epoch0.pt", make_checkpoint(model, optimizer, scheduler, 0, history, spec, config, world)))
        del ckpt

    net = wrap_data_parallel(model, device)
    runner = _EpochRunner(net, optimizer, scheduler, recipe, num_classes, device, memory_format)
    started = time.monotonic()
    stopped_early = False
    outer_rng = _rng_state()  # restored at the end: seeding per epoch must not leak into the caller
    try:
        for epoch in range(start_epoch + 1, recipe.epochs + 1):
            _seed_everything(recipe.epoch_seed(epoch, rank()))
            epoch_start = time.monotonic()
            metrics = runner.run(batches, epoch, progress=progress)
            record: dict[str, Any] = {"epoch": epoch, "train_loss": metrics["loss"], "train_acc": metrics["acc"],
                                      "lr": optimizer.param_groups[0]["lr"], "test_loss": None, "test_acc": None,
                                      "samples": metrics["samples"], "test_samples": None}
            if evaluation is not None:
                record.update(_test_epoch(model, evaluation, device, epoch, recipe))
            record["seconds"] = time.monotonic() - epoch_start
            history.append(record)
            if out is not None:  # rank 0 writes; a failure there stops every rank
                from_rank_zero(lambda: _write_epoch(  # type: ignore[arg-type]
                    folder, make_checkpoint(model, optimizer, scheduler, epoch, history, spec, config, world),
                    epoch, history, checkpoint_every))
            out_of_time = max_minutes is not None and time.monotonic() - started > 60 * max_minutes
            if epoch < recipe.epochs and from_rank_zero(lambda: out_of_time):  # every rank stops together
                stopped_early = True
                break
    finally:
        _restore_rng(outer_rng)
    if memory_format is not None:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    completed = history[-1]["epoch"] if history else start_epoch
    last = out / "last.pt" if out is not None else None
    return TrainResult(history=history, epochs_completed=completed, out=str(out) if out is not None else None,
                       last_checkpoint=str(last) if last is not None and last.exists() else None,
                       resumed_from_epoch=resumed_from, stopped_early=stopped_early,
                       elapsed_s=time.monotonic() - started, model_name=spec.get("model_name"), world_size=world,
                       model=unwrap(net))


def _training_batches(model: nn.Module, recipe: Recipe, train_data: Any, num_classes: int,
                      num_samples: int | None, num_workers: int, world: int) -> TrainBatches:
    """This rank's training batches; checks the data's classes against the model and sets DropPath."""
    batches = TrainBatches(train_data, batch_size=recipe.batch_size, randaugment=recipe.randaugment,
                           crop_flip=recipe.crop_flip, num_samples=num_samples, seed=recipe.seed,
                           num_workers=num_workers, rank=rank(), world_size=world)
    if batches.spec_num_classes is not None and batches.spec_num_classes > num_classes:
        raise ValueError(f"data {train_data!r} has {batches.spec_num_classes} classes but the model has "
                         f"{num_classes} outputs; build it with num_classes={batches.spec_num_classes}")
    if recipe.drop_path is not None and _set_drop_path(model, recipe.drop_path) == 0 and recipe.drop_path > 0:
        warnings.warn("train: drop_path given but the model has no DropPath module; build it with "
                      "drop_path_rate=... instead", stacklevel=4)
    return batches


def _test_epoch(model: nn.Module, evaluation: Any, device: torch.device, epoch: int, recipe: Recipe) -> dict:
    """test_loss, test_acc (%), test_samples after `epoch` (split over ranks); a non-finite loss is an error."""
    scores = evaluate(model, evaluation, device=device, shard=world_size() > 1)
    if not math.isfinite(scores["loss"]):
        raise FloatingPointError(f"train: the test loss is {scores['loss']} after epoch {epoch}; the "
                                 f"model diverged (lower lr, now {recipe.lr}, or enable grad_clip)")
    return {"test_loss": scores["loss"], "test_acc": scores["acc"], "test_samples": scores["samples"]}


def _write_epoch(folder: OutputFolder, ckpt: dict[str, Any], epoch: int, history: list[dict[str, Any]],
                 checkpoint_every: int) -> None:
    import json

    from ..common.results import to_jsonable

    if checkpoint_every and epoch % checkpoint_every == 0:
        folder.save_torch(f"checkpoint_epoch{epoch}.pt", ckpt)
    folder.save_torch("last.pt", ckpt)
    folder.write_text("metrics.jsonl", "".join(json.dumps(to_jsonable(r)) + "\n" for r in history))

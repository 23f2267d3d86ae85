"""Checkpoints of `train`: what one holds, which hyper-parameters a resumed run must share with it, and
the decision to resume (with what it says on stderr).

`resume` takes three values: True resumes from OUT/last.pt when the run's hyper-parameters equal the
checkpoint's and refuses (ResumeMismatchError naming each difference) otherwise; False starts over;
"force" resumes even when they differ (the differences are printed).

Example:
    >>> differences({"lr": 1e-3, "epochs": 6}, {"lr": 1e-2, "epochs": 6})
    ['lr: 0.001 in the checkpoint, 0.01 now']
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..common.batches import is_single_batch
from ..models import describe_mismatch, load_checkpoint, state_dict_mismatch

__all__ = ["CHECKPOINT_FORMAT", "ResumeMismatchError", "make_checkpoint", "run_config", "differences",
           "read_resumable", "restore", "check_resume_arg"]

CHECKPOINT_FORMAT = "fastvit_analysis.checkpoint/1"
LAST = "last.pt"


class ResumeMismatchError(ValueError):
    """OUT/last.pt was written by a run with other hyper-parameters; `.differences` lists them."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


def check_resume_arg(resume: Any) -> None:
    if not (resume is True or resume is False or resume == "force"):
        raise ValueError(f"resume must be True, False or 'force', got {resume!r}")


def describe_data(data: Any) -> str:
    """What identifies the training data in a checkpoint: the spec string, a hash of a single (x, y)
    batch's bytes, or (for a Dataset or loader, which cannot be hashed cheaply) its type and length."""
    if isinstance(data, str):
        return data
    if is_single_batch(data):
        digest = hashlib.sha256()
        for t in data[:2]:
            t = t.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return f"batch sha256:{digest.hexdigest()[:16]}"
    length = len(data) if hasattr(data, "__len__") else "?"
    return f"{type(data).__name__} of length {length}"


def run_config(recipe_dict: dict[str, Any], spec: dict[str, Any], train_data: Any,
               num_samples: int | None) -> dict[str, Any]:
    """The hyper-parameters a resumed run must share with its checkpoint (test data, device, progress,
    checkpoint_every, max_minutes, channels_last and the world size may change)."""
    return {"model_name": spec.get("model_name"), "model_kwargs": dict(spec.get("model_kwargs") or {}),
            **recipe_dict, "train_data": describe_data(train_data), "num_samples": num_samples}


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'name: stored in the checkpoint, current now' for each key both hold with unequal values."""
    return [f"{k}: {stored[k]!r} in the checkpoint, {current[k]!r} now"
            for k in current if k in stored and _normalise(stored[k]) != _normalise(current[k])]


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def make_checkpoint(model: nn.Module, optimizer, scheduler, epoch: int, history: list, spec: dict[str, Any],
                    config: dict[str, Any], world: int) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_name": spec.get("model_name"),
            "model_kwargs": spec.get("model_kwargs", {}), "epoch": epoch, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "metrics": list(history),
            "config": config, "world_size": world}


def read_resumable(out: Path, resume: bool | str, config: dict[str, Any], epochs: int) -> dict[str, Any] | None:
    """OUT/last.pt when this run should continue it, else None (no file, or resume=False).

    Prints `train: resuming from OUT/last.pt at epoch E/N` to stderr. Raises ResumeMismatchError when the
    hyper-parameters differ (unless resume="force"), ValueError for another model's checkpoint.
    """
    path = out / LAST
    if not resume or not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    stored = ckpt.get("config") or {}
    stored_name = ckpt.get("model_name") or stored.get("model_name")
    if stored_name and config.get("model_name") and stored_name != config["model_name"]:
        raise ValueError(f"cannot resume: {str(path)!r} holds a {stored_name!r} model, not {config['model_name']!r} "
                         f"(use another out folder, or resume=False / --no-resume to start over)")
    if "model_name" not in stored:  # written before train_data was described this way: compare the recipe only
        config = {k: v for k, v in config.items() if k != "train_data"}
    diff = differences(stored, config)
    epoch = int(ckpt["epoch"])
    if diff and resume != "force":
        raise ResumeMismatchError(
            f"cannot resume from {str(path)!r}: its run had other hyper-parameters ({'; '.join(diff)}); "
            f"start over with resume=False, or continue anyway with resume='force'", diff)
    note = f" despite other hyper-parameters ({'; '.join(diff)})" if diff else ""
    done = " (nothing left to train)" if epoch >= epochs else ""
    print(f"train: resuming from {path} at epoch {epoch}/{epochs}{done}{note}", file=sys.stderr, flush=True)
    return ckpt


def restore(ckpt: dict[str, Any], model: nn.Module, optimizer, scheduler, source: str) -> tuple[int, list]:
    """Load weights, optimizer and schedule states; returns (epoch, history)."""
    missing, unexpected = state_dict_mismatch(model, ckpt["model"])
    if missing or unexpected:
        raise ValueError(f"cannot resume: {source!r} does not match the model: "
                         f"{describe_mismatch(missing, unexpected)}")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"cannot resume: {source!r} does not match the model: {str(exc).splitlines()[-1]}") \
            from None
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    return int(ckpt["epoch"]), list(ckpt.get("metrics") or [])

"""The output folder of `train`: one process at a time (OUT/.lock), unique temporary names, the umask's
file mode, writability checked before any training, and failures as one-line CLI errors."""
import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastvit_analysis as fa
from fastvit_analysis.cli.main import main
from fastvit_analysis.data import SyntheticShapes
from fastvit_analysis.models import create
from fastvit_analysis.training import FolderBusyError

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(widths=(4, 4, 8, 8), stem_width=4)
LIGHT = dict(mixup=0, cutmix=0, randaugment=None, crop_flip=False, label_smoothing=0, warmup_epochs=0,
             progress=False, batch_size=16, epochs=1)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    return SyntheticShapes("train", num_samples=16, seed=5).tensors()


def _train(out, batch, **kw):
    return fa.train(create("demo_resnet", **TINY), batch, out=out, **(LIGHT | kw))


def test_second_process_into_the_same_folder_refuses(tmp_path, batch):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(tmp_path / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError, match="is in use by another running process"):
            _train(tmp_path, batch)
        assert not (tmp_path / "last.pt").exists() and not (tmp_path / "checkpoint_epoch0.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    _train(tmp_path, batch)  # the lock died with its process
    # and the lock is released when train returns: this process can take it again
    fd = os.open(tmp_path / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_cli_second_writer_is_a_one_line_error(tmp_path, capsys):
    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description in this process: flock conflicts
    try:
        status = main(["train", "--model", "demo_resnet", "--epochs", "1", "--num-samples", "16", "--test-samples",
                       "16", "--batch-size", "16", "--out", str(tmp_path), "--no-progress"])
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "is in use by another running process" in err


def test_unique_temporary_names_and_umask_mode(tmp_path, batch):
    (tmp_path / ".last.pt.tmp").mkdir()  # what the fixed temporary name of another writer would be
    (tmp_path / ".metrics.jsonl.tmp").mkdir()
    old = os.umask(0o002)
    try:
        _train(tmp_path, batch)
    finally:
        os.umask(old)
    for name in ("last.pt", "checkpoint_epoch0.pt", "checkpoint_epoch1.pt", "metrics.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o664, name
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == [".last.pt.tmp",
                                                                                      ".metrics.jsonl.tmp"]


def test_unwritable_folder_fails_before_training(tmp_path, batch, monkeypatch, capsys):
    import tempfile

    real = tempfile.mkstemp
    calls = []

    def read_only(*args, dir=None, **kw):
        if dir is not None and Path(dir) == tmp_path:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr("fastvit_analysis.training.loop._EpochRunner.run", lambda *a, **k: calls.append(1))
    with pytest.raises(OSError, match="is not writable: Read-only file system"):
        _train(tmp_path, batch)
    assert calls == []  # no epoch ran
    status = main(["train", "--model", "demo_resnet", "--epochs", "1", "--num-samples", "16", "--out", str(tmp_path),
                   "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith("fastvit-analysis: error: --out=") and "is not writable" in err


def test_zero_samples_and_non_finite_losses_are_errors(batch):
    model = create("demo_resnet", **TINY)
    with pytest.raises(ValueError, match="epoch 1 saw 0 training samples"):
        fa.train(model, (batch[0][:1], batch[1][:1]), **(LIGHT | {"mixup": 1.0}))  # Mixup drops a lone sample
    with pytest.raises(ValueError, match="test_data is empty"):
        fa.train(model, batch, test_data=[], **LIGHT)

    class NaNOnEval(torch.nn.Module):
        num_classes = 10

        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3 * 32 * 32, 10)

        def forward(self, x):
            out = self.head(x.flatten(1))
            return out if self.training else out * float("nan")

    with pytest.raises(FloatingPointError, match="test loss is nan after epoch 1"):
        fa.train(NaNOnEval(), batch, test_data=batch, **LIGHT)
    diverging = NaNOnEval()
    diverging.train = lambda mode=True: torch.nn.Module.train(diverging, False)  # NaN in training too
    with pytest.raises(FloatingPointError, match="loss diverged"):
        fa.train(diverging, batch, **LIGHT)


def test_cli_divergence_is_one_line(tmp_path, monkeypatch, capsys):
    def diverge(*args, **kwargs):
        raise FloatingPointError("train: the loss diverged (nan on rank 0) at epoch 1, step 0")

    monkeypatch.setattr(fa, "train", diverge)
    status = main(["train", "--model", "demo_resnet", "--epochs", "1", "--num-samples", "16", "--test-samples", "16",
                   "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and err == "fastvit-analysis: error: train: the loss diverged (nan on rank 0) at epoch 1, step 0"

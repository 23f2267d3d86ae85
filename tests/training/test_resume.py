"""Resuming `train`: it says what it reused, refuses a checkpoint of other hyper-parameters naming each
difference (unless resume=False starts over or resume="force" continues), in the API and the CLI."""
import pytest
import torch

import fastvit_analysis as fa
from fastvit_analysis.cli.main import main
from fastvit_analysis.data import SyntheticShapes
from fastvit_analysis.models import create
from fastvit_analysis.training import ResumeMismatchError

TINY = dict(widths=(4, 4, 8, 8), stem_width=4)
LIGHT = dict(mixup=0, cutmix=0, randaugment=None, crop_flip=False, label_smoothing=0, warmup_epochs=0,
             progress=False, batch_size=16)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    return SyntheticShapes("train", num_samples=32, seed=5).tensors()


def _train(out, batch, **kw):
    return fa.train(create("demo_resnet", **TINY), batch, out=out, **(LIGHT | {"epochs": 2, "lr": 1e-3} | kw))


def test_resume_says_what_it_reused(tmp_path, batch, capsys):
    _train(tmp_path, batch, epochs=1)
    capsys.readouterr()
    result = _train(tmp_path, batch, epochs=1, resume=True)
    assert result.resumed_from_epoch == 1
    expected = f"train: resuming from {tmp_path / 'last.pt'} at epoch 1/1 (nothing left to train)"
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("change, named", [
    ({"lr": 1e-2}, "lr: 0.001 in the checkpoint, 0.01 now"),
    ({"epochs": 3}, "epochs: 2 in the checkpoint, 3 now"),
    ({"batch_size": 8}, "batch_size: 16 in the checkpoint, 8 now"),
    ({"seed": 1}, "seed: 0 in the checkpoint, 1 now"),
    ({"mixup": 0.5}, "mixup: 0 in the checkpoint, 0.5 now"),
    ({"weight_decay": 0.0}, "weight_decay: 0.05 in the checkpoint, 0.0 now"),
])
def test_other_hyper_parameters_refuse_naming_them(tmp_path, batch, change, named):
    _train(tmp_path, batch, epochs=2)
    before = torch.load(tmp_path / "last.pt", weights_only=False)["model"]
    with pytest.raises(ResumeMismatchError, match="cannot resume") as info:
        _train(tmp_path, batch, **change)
    assert named in str(info.value) and "resume=False" in str(info.value) and "resume='force'" in str(info.value)
    after = torch.load(tmp_path / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # the other run's last.pt is untouched


def test_other_data_and_model_kwargs_refuse(tmp_path, batch):
    _train(tmp_path, batch, epochs=1)
    other = (batch[0] + 1, batch[1])
    with pytest.raises(ResumeMismatchError, match="train_data: 'batch sha256:"):
        _train(tmp_path, other, epochs=1)
    with pytest.raises(ResumeMismatchError, match="model_kwargs"):
        fa.train(create("demo_resnet", widths=(4, 4, 8, 16), stem_width=4), batch, out=tmp_path,
                 **(LIGHT | {"epochs": 1, "lr": 1e-3}))


def test_force_continues_and_no_resume_starts_over(tmp_path, batch, capsys):
    _train(tmp_path, batch, epochs=1)
    forced = _train(tmp_path, batch, epochs=2, resume="force")
    assert forced.resumed_from_epoch == 1 and [r["epoch"] for r in forced.history] == [1, 2]
    assert "despite other hyper-parameters (epochs: 1 in the checkpoint, 2 now)" in capsys.readouterr().err
    fresh = _train(tmp_path, batch, epochs=1, lr=5e-3, resume=False)
    assert fresh.resumed_from_epoch is None and len(fresh.history) == 1
    assert torch.load(tmp_path / "last.pt", weights_only=False)["config"]["lr"] == 5e-3
    with pytest.raises(ValueError, match="resume must be True, False or 'force', got 'yes'"):
        _train(tmp_path, batch, resume="yes")


def test_cli_refusal_names_the_flags(tmp_path, capsys):
    args = ["train", "--model", "demo_resnet", "--data", "synthetic", "--num-samples", "16", "--test-samples", "16",
            "--batch-size", "16", "--mixup", "0", "--cutmix", "0", "--randaugment", "none", "--out", str(tmp_path),
            "--no-progress", "--warmup-epochs", "0"]
    assert main(args + ["--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(args + ["--epochs", "1", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "lr: 0.000125 in the checkpoint, 0.01 now" in err
    assert "--no-resume" in err and "--force-resume" in err
    assert main(args + ["--epochs", "2", "--force-resume"]) == 0
    assert "train: resuming from" in capsys.readouterr().err

"""train(): the loss goes down, the recipe runs end to end, checkpoints rebuild the model, resume is exact."""
import json
import shutil

import pytest
import torch

import fastvit_analysis as fa
from fastvit_analysis.data import SyntheticShapes
from fastvit_analysis.models import create
from fastvit_analysis.training import evaluate

TINY = dict(widths=(4, 4, 8, 8), stem_width=4)
LIGHT = dict(mixup=0, cutmix=0, randaugment=None, crop_flip=False, label_smoothing=0, warmup_epochs=0,
             progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    return SyntheticShapes("train", num_samples=64, seed=5).tensors()


def test_short_training_lowers_the_loss(batch):
    model = create("demo_resnet", widths=(4, 8, 8, 8), stem_width=8)
    before = evaluate(model, batch)["loss"]
    result = fa.train(model, batch, epochs=12, batch_size=16, lr=1e-2, grad_clip=None, **LIGHT)
    assert result.epochs_completed == 12 and len(result.history) == 12
    assert result.history[-1]["train_loss"] < 0.85 * result.history[0]["train_loss"]
    assert evaluate(model, batch)["loss"] < before - 0.3
    assert not model.training


def test_full_recipe_from_spec_writes_checkpoints(tmp_path):
    result = fa.train("demo_alternet", "synthetic", test_data="synthetic", epochs=2, num_samples=32, batch_size=16,
                      drop_path=0.1, out=tmp_path, progress=False, model_kwargs=TINY | {"dim_head": 4},
                      warmup_epochs=1)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [".lock", "checkpoint_epoch0.pt", "checkpoint_epoch1.pt", "checkpoint_epoch2.pt", "last.pt",
                     "metrics.jsonl"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all(0 <= r["test_acc"] <= 100 and r["test_loss"] > 0 and r["samples"] == 32 for r in lines)
    # warm-up reaches the peak lr at its end, cosine ends at lr_min = lr / 100
    assert lines[0]["lr"] == pytest.approx(1.25e-4) and lines[1]["lr"] == pytest.approx(1.25e-6)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert {"model", "model_name", "model_kwargs", "epoch", "optimizer", "scheduler", "metrics"} <= set(ckpt)
    assert ckpt["model_name"] == "demo_alternet" and ckpt["epoch"] == 2
    rebuilt = create(str(tmp_path / "last.pt"))
    for (k, a), b in zip(result.model.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), k
    json.dumps(result.to_dict())
    assert result.to_dict()["model_name"] == "demo_alternet"


def _run(out, batch, epochs=3):
    torch.manual_seed(0)
    model = create("demo_resnet", drop_path_rate=0.2, **TINY)
    return fa.train(model, batch, epochs=epochs, batch_size=16, lr=1e-3, mixup=0.8, cutmix=1.0,
                    randaugment=None, out=out, progress=False, warmup_epochs=1)


def test_resume_reproduces_an_uninterrupted_run(tmp_path, batch):
    full = _run(tmp_path / "full", batch)
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copy(tmp_path / "full" / "checkpoint_epoch1.pt", interrupted / "last.pt")
    resumed = _run(interrupted, batch)
    assert resumed.resumed_from_epoch == 1
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    # a finished run resumes to a no-op
    again = _run(interrupted, batch)
    assert again.resumed_from_epoch == 3 and len(again.history) == 3


def test_resume_refuses_another_model(tmp_path, batch):
    _run(tmp_path, batch, epochs=1)
    with pytest.raises(ValueError, match="cannot resume.*demo_resnet"):
        fa.train(create("demo_vit", img_size=32), batch, epochs=1, out=tmp_path, **LIGHT)
    with pytest.raises(ValueError, match="does not match model 'demo_resnet'"):
        create(str(tmp_path / "last.pt"), num_classes=5)


def test_global_rng_untouched_and_channels_last(batch):
    model = create("demo_resnet", **TINY)
    state = torch.get_rng_state()
    fa.train(model, batch, epochs=1, batch_size=32, channels_last=True, **LIGHT)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(p.is_contiguous() for p in model.parameters())


def test_max_minutes_stops_early(batch):
    result = fa.train(create("demo_resnet", **TINY), batch, epochs=5, batch_size=32, max_minutes=1e-6, **LIGHT)
    assert result.stopped_early and result.epochs_completed == 1


def test_bad_arguments(batch):
    model = create("demo_resnet", **TINY)
    with pytest.raises(ValueError, match="epochs"):
        fa.train(model, batch, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        fa.train(model, batch, epochs=1, lr=-1.0)
    with pytest.raises(ValueError, match="10 classes but the model has 5 outputs"):
        fa.train(create("demo_resnet", num_classes=5, **TINY), "synthetic", epochs=1, num_samples=10, **LIGHT)
    with pytest.raises(ValueError, match="label 9 but the model has 5 outputs"):
        fa.train(create("demo_resnet", num_classes=5, **TINY), batch, epochs=1, **LIGHT)
    with pytest.raises(ValueError, match="empty"):
        fa.train(model, [], epochs=1, **LIGHT)
    with pytest.raises(ValueError, match="unknown data spec"):
        fa.train(model, "mnist", epochs=1, **LIGHT)
    with pytest.raises(TypeError, match="model"):
        fa.train(3, batch, epochs=1)

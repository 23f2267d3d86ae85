"""Data-parallel `train` under torchrun (2 gloo ranks on CPU): it matches a one-process run, rank 0 alone
writes, and a run resumes at another world size. Sharding is checked in-process against one process."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastvit_analysis.training import evaluate
from fastvit_analysis.training.batches import TrainBatches, shard_batches
from tests.torchrun import ENV, torchrun

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "training" / "_train_worker.py"


def test_rank_shards_form_the_one_process_batches():
    x, y = torch.arange(40.0).view(20, 2), torch.arange(20)
    one = [yb.tolist() for _, yb in TrainBatches((x, y), batch_size=6, crop_flip=False).epoch(3)]
    shards = [[yb.tolist() for _, yb in TrainBatches((x, y), batch_size=6, crop_flip=False, rank=r,
                                                     world_size=2).epoch(3)] for r in (0, 1)]
    assert len(one) == len(shards[0]) == len(shards[1]) == 3  # the same number of optimizer steps
    for step, batch in enumerate(one):
        assert sorted(shards[0][step] + shards[1][step]) == sorted(batch)
    other_epoch = [yb.tolist() for _, yb in TrainBatches((x, y), batch_size=6, crop_flip=False).epoch(4)]
    assert other_epoch != one
    with pytest.raises(ValueError, match="batch_size \\(6\\) must be a multiple of the world size \\(4\\)"):
        TrainBatches((x, y), batch_size=6, world_size=4)


def test_sharded_evaluation_counts_every_sample_once(monkeypatch):
    model = torch.nn.Linear(2, 3)
    batches = [(torch.randn(n, 2), torch.randint(0, 3, (n,))) for n in (4, 3, 5)]  # uneven over 2 ranks
    full = evaluate(model, batches)
    # two ranks, emulated: each evaluates its share (shard=True); the sum over ranks is left to the test
    monkeypatch.setattr("fastvit_analysis.training.loop.world_size", lambda: 2)
    monkeypatch.setattr("fastvit_analysis.training.loop.sum_over_ranks", lambda values, device: list(values))
    sums = []
    for r in (0, 1):
        monkeypatch.setattr("fastvit_analysis.training.loop.rank", lambda r=r: r)
        sums.append(evaluate(model, batches, shard=True))
    assert [b[0].shape[0] for b in shard_batches(batches, 0, 2)] == [4, 5]
    assert [b[0].shape[0] for b in shard_batches(batches, 1, 2)] == [3]
    assert sums[0]["samples"] + sums[1]["samples"] == full["samples"] == 12
    # one batch over two ranks: rank 1's share is empty and adds nothing (here: no samples to divide by)
    monkeypatch.setattr("fastvit_analysis.training.loop.rank", lambda: 1)
    with pytest.raises(ValueError, match="evaluation saw 0 samples"):
        evaluate(model, batches[0], shard=True)
    monkeypatch.setattr("fastvit_analysis.training.loop.rank", lambda: 0)
    assert evaluate(model, batches[0], shard=True)["samples"] == 4
    pooled = (sums[0]["loss"] * 9 + sums[1]["loss"] * 3) / 12
    assert pooled == pytest.approx(full["loss"], rel=1e-12)


def _torchrun(nproc, out, epochs, report):
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), str(out), str(epochs), str(report)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               str(WORKER), str(out), str(epochs), str(report)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _history(report, rank=0):
    return json.loads(Path(f"{report}.rank{rank}.json").read_text())


@pytest.mark.slow
def test_two_ranks_match_one_rank_and_resume_across_world_sizes(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    _torchrun(1, tmp_path / "one", 2, tmp_path / "one")
    _torchrun(2, tmp_path / "two", 2, tmp_path / "two")
    one, two = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert two["world_size"] == 2 and one["world_size"] == 1
    untimed = [{k: v for k, v in r.items() if k != "seconds"} for r in two["history"]]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in _history(tmp_path / "two", 1)["history"]] \
        == untimed  # every rank reports the same numbers
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["samples"] == a["samples"] == 32 and b["test_samples"] == a["test_samples"]
        # the same global batches and gradients: equal to float32 rounding (measured 5e-8 relative)
        for key in ("train_loss", "test_loss", "lr"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), key
        assert b["test_acc"] == pytest.approx(a["test_acc"], abs=100 / a["test_samples"] + 1e-9)
    assert one["history"][1]["train_loss"] < one["history"][0]["train_loss"]
    # rank 0 alone wrote: one set of files, no stray temporaries
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        ".lock", "checkpoint_epoch0.pt", "checkpoint_epoch1.pt", "checkpoint_epoch2.pt", "last.pt", "metrics.jsonl"]
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
    ckpt = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2

    # resume: 1 rank continues the 2-rank run's epoch-1 checkpoint, 2 ranks continue a 1-rank one
    for source, nproc, name in (("two", 1, "two_then_one"), ("one", 2, "one_then_two")):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(tmp_path / source / "checkpoint_epoch1.pt", folder / "last.pt")
        done = _torchrun(nproc, folder, 2, folder)
        assert done.stderr.count(f"train: resuming from {folder / 'last.pt'} at epoch 1/2") == 1  # rank 0 only
        resumed = _history(folder)
        assert resumed["resumed_from"] == 1 and resumed["world_size"] == nproc
        reference = _history(tmp_path / source)["history"][1]
        assert resumed["history"][1]["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-5)
        assert resumed["history"][1]["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-5)


@pytest.mark.slow
def test_cli_train_under_torchrun_writes_once(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "run"
    done = torchrun(["-m", "fastvit_analysis", "train", "--model", "demo_resnet", "--epochs", "1", "--num-samples",
                     "32", "--test-samples", "24", "--batch-size", "16", "--out", str(out), "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("train [run]") == 1 and "world size=2" in done.stdout  # rank 0 reports
    payload = json.loads((out / "train.json").read_text())
    assert payload["summary"]["world size"] == 2
    row = payload["result"]["history"][0]
    assert row["samples"] == 32 and row["test_samples"] == 24 and 0 <= row["test_acc"] <= 100
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

"""Sweeps under torchrun: two gloo ranks share the landscape's grid points, only rank 0 writes."""
import json
import shutil
from pathlib import Path

import pytest

from tests.torchrun import torchrun

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_landscape_under_torchrun_two_ranks(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "run"
    done = torchrun(["-m", "fastvit_analysis", "landscape", "--model", "demo_resnet", "--dims", "1", "--steps", "4",
                     "--num-samples", "8", "--batch-size", "8", "--out", str(out), "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("landscape [demo_resnet]") == 1  # rank 0 reports and writes
    points = out / "landscape_points"
    ranks = {p.name: len(p.read_text().splitlines()) for p in points.glob("points.rank*.jsonl")}
    assert ranks == {"points.rank0.jsonl": 2, "points.rank1.jsonl": 2}
    payload = json.loads((out / "landscape.json").read_text())
    assert len(payload["plot"]["loss"]) == 4 and (out / "landscape.png").is_file()

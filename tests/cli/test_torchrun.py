"""Sweeps under torchrun: two gloo ranks share the landscape's grid points, only rank 0 writes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_landscape_under_torchrun_two_ranks(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    env = {**os.environ, "FASTVIT_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "fastvit_analysis", "landscape", "--model", "demo_resnet", "--dims", "1",
                           "--steps", "4", "--num-samples", "8", "--batch-size", "8", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("landscape [demo_resnet]") == 1  # rank 0 reports and writes
    points = out / "landscape_points"
    ranks = {p.name: len(p.read_text().splitlines()) for p in points.glob("points.rank*.jsonl")}
    assert ranks == {"points.rank0.jsonl": 2, "points.rank1.jsonl": 2}
    payload = json.loads((out / "landscape.json").read_text())
    assert len(payload["plot"]["loss"]) == 4 and (out / "landscape.png").is_file()

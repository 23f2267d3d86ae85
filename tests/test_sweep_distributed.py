"""Sharding under torchrun (2 gloo ranks on CPU): same grid as one process, disjoint shares, resume
across world sizes, errors raised on every rank instead of a hang."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SETUP = textwrap.dedent("""
    import torch
    from torch import nn

    def make_model():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        with torch.no_grad():
            m[1].running_mean.normal_()
        return m

    def make_data():
        g = torch.Generator().manual_seed(1)
        return (torch.randn(10, 3, 6, 6, generator=g), torch.randint(0, 3, (10,), generator=g))

    class CountingLoss(nn.Module):
        def __init__(self, die_after=None):
            super().__init__()
            self.calls, self.die_after = 0, die_after

        def forward(self, out, y):
            self.calls += 1
            if self.die_after is not None and self.calls > self.die_after:
                raise RuntimeError("killed")
            return nn.functional.cross_entropy(out, y)
""")

WORKER = SETUP + textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from fastvit_analysis import loss_landscape, run_sweep

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    out_dir, resume_dir = sys.argv[1], sys.argv[2]
    model, data = make_model(), make_data()
    report = {"world": dist.get_world_size()}

    report["grid"] = loss_landscape(model, CountingLoss(), data, steps=4, per_pass=3,
                                    progress=False).loss.tolist()
    seen = []
    def evaluate(pts):
        seen.extend(pts)
        return [{"v": p * 10} for p in pts]
    report["sweep"] = [r["v"] for r in run_sweep(evaluate, list(range(11)), per_pass=2, progress=False)]
    report["sweep_mine"] = seen

    loss = CountingLoss()
    report["resumed"] = loss_landscape(model, loss, data, steps=4, per_pass=3, out=resume_dir,
                                       progress=False).loss.tolist()
    report["resume_calls"] = loss.calls

    try:
        loss_landscape(model, CountingLoss(), data, steps=5, out=resume_dir, progress=False)
    except ValueError as e:
        report["meta_error"] = str(e)

    def failing(pts):
        if rank == 1:
            raise ZeroDivisionError("boom on rank 1")
        return [{} for _ in pts]
    try:
        run_sweep(failing, list(range(6)), progress=False)
    except Exception as e:
        report["failure"] = f"{type(e).__name__}: {e}"

    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(report, f)
    dist.destroy_process_group()
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(tmp_path):
    scope: dict = {}
    exec(SETUP, scope)
    from fastvit_analysis import loss_landscape

    model, data = scope["make_model"](), scope["make_data"]()
    expected = loss_landscape(model, scope["CountingLoss"](), data, steps=4, per_pass=3, progress=False)

    # A one-process run killed after 2 passes (6 points) leaves a partial out dir for the ranks to resume.
    resume_dir = tmp_path / "resume"
    with pytest.raises(RuntimeError, match="killed"):
        loss_landscape(model, scope["CountingLoss"](die_after=2), data, steps=4, per_pass=3,
                       out=resume_dir, progress=False)
    assert len((resume_dir / "points.rank0.jsonl").read_text().splitlines()) == 6

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo), FASTVIT_PROGRESS="0", OMP_NUM_THREADS="1",
               MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script), str(tmp_path),
           str(resume_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    for rep in reports:
        assert rep["world"] == 2
        np.testing.assert_allclose(rep["grid"], expected.loss, rtol=1e-6, atol=1e-7)
        assert rep["sweep"] == [10 * i for i in range(11)]
        np.testing.assert_allclose(rep["resumed"], expected.loss, rtol=1e-6, atol=1e-7)
        assert "another sweep" in rep["meta_error"]
    # disjoint shares that cover the sweep
    mine = [set(rep["sweep_mine"]) for rep in reports]
    assert mine[0].isdisjoint(mine[1]) and mine[0] | mine[1] == set(range(11))
    assert all(len(m) in (5, 6) for m in mine)
    # the 10 missing points split 5/5: 2 passes (3 + 2 points) of one batch on each rank
    assert [rep["resume_calls"] for rep in reports] == [2, 2]
    assert sum(len((resume_dir / f"points.rank{r}.jsonl").read_text().splitlines()) for r in range(2)) == 16
    assert reports[0]["failure"] == "RuntimeError: sweep failed on rank 1: ZeroDivisionError: boom on rank 1"
    assert reports[1]["failure"] == "ZeroDivisionError: boom on rank 1"

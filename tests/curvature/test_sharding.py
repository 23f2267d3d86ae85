"""One Hessian over 2 gloo ranks (torchrun) equals the one-process Hessian: spectrum, trace (same probes),
density and max-eigen; uneven shards (11 samples: 6 + 5), every sample used once; the CLI under torchrun."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from fastvit_analysis.curvature.sharding import shard_batches
from tests.torchrun import torchrun

ROOT = Path(__file__).resolve().parents[2]

SETUP = textwrap.dedent("""
    import torch
    from torch import nn

    def make_model(dtype):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        with torch.no_grad():
            m[1].running_mean.normal_()
        return m.to(dtype)

    def make_data(dtype):
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(11, 3, 6, 6, generator=g, dtype=dtype), torch.randint(0, 3, (11,), generator=g)
        return [(x[:4], y[:4]), (x[4:9], y[4:9]), (x[9:], y[9:])]   # unequal batches, 11 samples

    def analyses(dtype, data, reduction):
        from fastvit_analysis import hessian_density, hessian_spectrum, hessian_trace, HessianOperator
        loss = nn.CrossEntropyLoss(reduction=reduction)
        out = {}
        spec = hessian_spectrum(make_model(dtype), loss, data, top_k=3, which="LM", tol=1e-6, progress=False)
        out["spectrum"] = spec.eigenvalues.tolist()
        out["trace"] = hessian_trace(make_model(dtype), loss, data, num_probes=12, progress=False).value
        dens = hessian_density(make_model(dtype), loss, data, num_probes=2, steps=8, progress=False)
        out["nodes"] = dens.nodes.tolist()
        H = HessianOperator(make_model(dtype), loss, data)
        out["num_samples"] = H.num_samples
        out["hv"] = H.matvec(torch.ones(H.num_params, dtype=dtype)).tolist()
        return out
""")

WORKER = SETUP + textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from fastvit_analysis import max_eigenvalue_spectrum
    from fastvit_analysis.curvature.sharding import shard_batches

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    report = {"world": dist.get_world_size()}
    for name, dtype in (("fp64", torch.float64), ("fp32", torch.float32)):
        shard = shard_batches(make_data(dtype))
        report[name + "_shard_sizes"] = [int(x.shape[0]) for x, _ in shard]
        report[name + "_shard_targets"] = [t for _, y in shard for t in y.tolist()]
        report[name] = analyses(dtype, shard, "mean")
    report["sum"] = analyses(torch.float64, shard_batches(make_data(torch.float64)), "sum")
    x = torch.cat([x for x, _ in make_data(torch.float64)]); y = torch.cat([y for _, y in make_data(torch.float64)])
    me = max_eigenvalue_spectrum(make_model(torch.float64), nn.CrossEntropyLoss(), (x, y), batch_size=2, top_k=2,
                                 per_pass=2, tol=1e-8, progress=False)
    report["max_eigen"] = me.eigenvalues.tolist()
    with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:
        json.dump(report, f)
    dist.destroy_process_group()
""")


def _torchrun(args: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return torchrun(args, cwd=tmp_path, timeout=timeout)


def test_shards_use_every_sample_once_with_uneven_sizes():
    x, y = torch.arange(11.0), torch.arange(11)
    data = [(x[:4], y[:4]), (x[4:9], y[4:9]), (x[9:], y[9:])]
    shards = [shard_batches(data, rank=r, world_size=2) for r in range(2)]
    got = [[t for _, b in s for t in b.tolist()] for s in shards]
    assert got == [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9]]
    assert sorted(got[0] + got[1]) == list(range(11))
    with pytest.raises(ValueError, match="1 sample.*world_size=2"):
        shard_batches((x[:1], y[:1]), rank=0, world_size=2)


def test_operator_without_a_group_refuses_distributed_true():
    x, y = torch.randn(4, 2), torch.randint(2, (4,))
    from fastvit_analysis import HessianOperator
    with pytest.raises(ValueError, match="distributed=True needs an initialised"):
        HessianOperator(nn.Linear(2, 2), nn.CrossEntropyLoss(), (x, y), distributed=True)


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tmp_path):
    scope: dict = {}
    exec(SETUP, scope)
    want = {name: scope["analyses"](dtype, scope["make_data"](dtype), "mean")
            for name, dtype in (("fp64", torch.float64), ("fp32", torch.float32))}
    want["sum"] = scope["analyses"](torch.float64, scope["make_data"](torch.float64), "sum")
    from fastvit_analysis import max_eigenvalue_spectrum
    data = scope["make_data"](torch.float64)
    x, y = torch.cat([a for a, _ in data]), torch.cat([b for _, b in data])
    want_me = max_eigenvalue_spectrum(scope["make_model"](torch.float64), nn.CrossEntropyLoss(), (x, y), batch_size=2,
                                      top_k=2, per_pass=2, tol=1e-8, progress=False).eigenvalues

    (tmp_path / "worker.py").write_text(WORKER)
    proc = _torchrun([str(tmp_path / "worker.py"), str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0]["fp64_shard_sizes"] == [2, 3, 1] and reports[1]["fp64_shard_sizes"] == [2, 2, 1]
    assert sorted(reports[0]["fp64_shard_targets"] + reports[1]["fp64_shard_targets"]) == sorted(y.tolist())
    for rep in reports:
        assert rep["world"] == 2
        for name, rtol in (("fp64", 1e-6), ("sum", 1e-6), ("fp32", 2e-4)):
            got, exp = rep[name], want[name]
            assert got["num_samples"] == 11
            assert torch.allclose(torch.tensor(got["hv"]), torch.tensor(exp["hv"]), rtol=rtol, atol=rtol * 1e-2)
            assert torch.allclose(torch.tensor(got["spectrum"]), torch.tensor(exp["spectrum"]), rtol=rtol)
            assert abs(got["trace"] - exp["trace"]) <= rtol * abs(exp["trace"])       # same probes
            assert torch.allclose(torch.tensor(got["nodes"]), torch.tensor(exp["nodes"]), rtol=rtol, atol=rtol)
        assert torch.allclose(torch.tensor(rep["max_eigen"], dtype=torch.float64), want_me, rtol=1e-6)
    assert reports[0]["fp64"] == reports[1]["fp64"]          # identical on every rank


@pytest.mark.slow
def test_cli_hessian_under_torchrun_equals_one_process_and_records_world_size(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    common = ["hessian", "--model", "demo_resnet", "--mode", "spectrum", "--top-k", "2", "--num-batches", "2",
              "--batch-size", "5", "--no-progress"]
    proc = _torchrun(["-m", "fastvit_analysis", *common, "--out", str(tmp_path / "two")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("hessian_spectrum [") == 1 and "world_size=2" in proc.stdout
    env = {**os.environ, "FASTVIT_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    one = subprocess.run([sys.executable, "-m", "fastvit_analysis", *common, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two_json = json.loads((tmp_path / "two" / "hessian_spectrum.json").read_text())
    one_json = json.loads((tmp_path / "one" / "hessian_spectrum.json").read_text())
    assert two_json["summary"]["world_size"] == 2 and one_json["summary"]["world_size"] == 1
    a = torch.tensor([two_json["summary"][f"eigenvalue_{i}"]["value"] for i in range(2)])
    b = torch.tensor([one_json["summary"][f"eigenvalue_{i}"]["value"] for i in range(2)])
    assert torch.allclose(a, b, rtol=1e-4), (a, b)               # float32 model: rounding

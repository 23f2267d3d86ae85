"""`fastvit-analysis demo --quick`: trains the three demo models, runs every analysis, writes the report
and the summary table; a second run reuses everything."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from fastvit_analysis.cli import main
from fastvit_analysis.cli.demo import ANALYSES, RESULT_FILE

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["demo_resnet", "demo_vit", "demo_alternet"]


def test_demo_quick_end_to_end_and_rerun_reuses_results(tmp_path, capsys):
    out = tmp_path / "demo"
    env = {**os.environ, "FASTVIT_PROGRESS": "0", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "fastvit_analysis", "demo", "--quick", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for model in MODELS:
        assert (out / model / "last.pt").is_file()
        for analysis in ["train", *ANALYSES]:
            payload = json.loads((out / model / RESULT_FILE[analysis]).read_text())
            assert payload["analysis"] == analysis and payload["summary"]
            assert (out / model / f"{analysis}.png").is_file() and (out / model / f"{analysis}.pdf").is_file()
    # the summary table: one row per model under a header naming the paper's contrasts
    table = done.stdout[done.stdout.index("neg. eig. frac") - 200:]
    for model in MODELS:
        assert re.search(rf"^{model}\s+\S+", table, flags=re.M), table
    report = out / "report.html"
    html = report.read_text()
    for ref in re.findall(r'(?:href|src)="([^"]+)"', html):
        if not ref.startswith("data:"):
            assert (out / ref).is_file(), ref
    assert all(m in html for m in MODELS) and "Run time" in html
    stages = json.loads((out / "demo.json").read_text())["stages"]
    assert len(stages) == len(MODELS) * (1 + len(ANALYSES))
    assert all(s["status"] == "done" for s in stages), stages

    # second run: checkpoints and results are reused, nothing is recomputed
    mtimes = {p: p.stat().st_mtime for p in out.glob("*/*.json")}
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "reused" in capsys.readouterr().out
    stages = json.loads((out / "demo.json").read_text())["stages"]
    assert all(s["status"] == "reused" for s in stages), stages
    assert {p: p.stat().st_mtime for p in out.glob("*/*.json")} == mtimes

    # the full-size planners size their stages from measured costs of the trained checkpoint
    import torch

    from fastvit_analysis.cli import demo

    ckpt, cpu = out / "demo_resnet" / "last.pt", torch.device("cpu")
    per_point_sample = demo._measure_landscape(ckpt, cpu)
    assert 0 < per_point_sample < 0.05
    cost = {"forward_s_per_sample": per_point_sample / 2, "landscape_s_per_point_sample": per_point_sample}
    budget = 2000 * per_point_sample
    plan = demo._plan_analysis("landscape", budget, cost)
    assert plan["steps"] % 2 == 1 and plan["steps"] ** 2 * plan["num_samples"] * per_point_sample <= budget
    sizes = demo._calibrate_max_eigen(None, ckpt, cpu, 10.0, quick=False)
    assert 2 <= sizes["num_batches"] <= 64 and sizes["top_k"] + 10 <= sizes["max_hvp"] <= 120
    assert sizes["num_batches"] * 30 * sizes["seconds_per_hvp"] <= 10.0 or sizes["num_batches"] == 2


def test_forget_points_drops_partial_results_of_one_analysis(tmp_path):
    from fastvit_analysis.cli import demo

    for analysis in ("landscape", "max_eigen"):
        (tmp_path / f"{analysis}_points").mkdir()
        (tmp_path / f"{analysis}_points" / "0.json").write_text("{}")
    demo._forget_points(tmp_path, "landscape")
    assert not (tmp_path / "landscape_points").exists()
    assert (tmp_path / "max_eigen_points" / "0.json").exists()

"""`fastvit-analysis demo`: a fixed recipe. Two `demo --quick` runs, one beside a busy-loop process, write
identical results (timings and paths aside); every stage runs; the report opens with the claims table;
a re-run reuses everything."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from fastvit_analysis.cli import demo, main
from fastvit_analysis.cli.demo import ANALYSES, QUICK_RECIPE, RECIPE, RESULT_FILE

ROOT = Path(__file__).resolve().parents[2]
# one model (it has both Conv and MSA blocks) keeps the two runs within CI's budget; the three-model path
# through the same stages and the claims is tests/cli/test_reproduce.py's tiny run
MODELS = ["demo_alternet"]
# timings, and the provenance block's wall-clock timestamp (created_utc)
TIMING = re.compile(r"seconds|elapsed|created_utc|(^|_)(time|eta)($|_)", re.I)


def _normalised(value, out: Path):
    """A result payload without timings, with the output folder replaced by a placeholder."""
    if isinstance(value, dict):
        # provenance.checkpoint.sha256 hashes last.pt, whose training history stores epoch timings
        return {k: _normalised(v, out) for k, v in value.items()
                if not TIMING.search(k) and k not in ("version", "sha256")}
    if isinstance(value, list):
        return [_normalised(v, out) for v in value]
    if isinstance(value, str):
        return value.replace(str(out), "OUT")
    return value


def _results(out: Path) -> dict[str, object]:
    files = sorted(p for p in out.rglob("*.json") if "_points" not in str(p) and p.name != "demo.json")
    return {str(p.relative_to(out)): _normalised(json.loads(p.read_text()), out) for p in files}


def _run_demo(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FASTVIT_PROGRESS": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "fastvit_analysis", "demo", "--quick", "--out", str(out),
                           "--no-progress", "--models", *MODELS], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=1800)


def test_recipe_is_fixed_and_has_the_sizes_that_can_show_an_effect():
    assert not any(hasattr(demo, name) for name in ("Clock", "_plan_training", "_measure", "_calibrate_max_eigen"))
    assert demo.recipe(False) == RECIPE and demo.recipe(True) == QUICK_RECIPE
    assert RECIPE["robustness"]["num_samples"] >= 2000
    me = RECIPE["max_eigen"]
    assert me["num_batches"] >= 64 and me["batch_size"] == 16 and me["top_k"] == 5 and me["weight_decay"] > 0
    assert RECIPE["landscape"]["steps"] == 21 and RECIPE["landscape"]["num_samples"] >= 512
    assert all(RECIPE[a]["num_samples"] >= 512 for a in ("fourier", "variance", "cka"))
    assert "max_eigen_warmup" in ANALYSES and "max_eigen" in ANALYSES  # end of warm-up and end
    argv = demo.analysis_argv("max_eigen", me)
    assert "--augment" in argv and argv[argv.index("--weight-decay") + 1] == me["weight_decay"]


def test_demo_quick_is_deterministic_on_a_loaded_machine_and_reuses_results(tmp_path, capsys):
    idle, loaded = tmp_path / "idle", tmp_path / "loaded"
    done = _run_demo(idle)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ETA" in done.stdout
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        done_loaded = _run_demo(loaded)
    finally:
        busy.kill()
        busy.wait()
    assert done_loaded.returncode == 0, done_loaded.stdout[-3000:] + done_loaded.stderr[-3000:]
    a, b = _results(idle), _results(loaded)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name

    for model in MODELS:
        assert (idle / model / "last.pt").is_file()
        for analysis in ["train", *ANALYSES]:
            payload = json.loads((idle / model / RESULT_FILE[analysis]).read_text())
            assert payload["summary"], (model, analysis)
    assert json.loads((idle / MODELS[0] / "warmup" / "max_eigen.json").read_text())["model"] == \
        f"{MODELS[0]} (end of warm-up)"
    stages = json.loads((idle / "demo.json").read_text())["stages"]
    assert len(stages) == len(MODELS) * (1 + len(ANALYSES))
    assert all(s["status"] == "done" for s in stages), stages
    html = (idle / "report.html").read_text()
    for ref in re.findall(r'(?:href|src)="([^"]+)"', html):
        if not ref.startswith("data:"):
            assert (idle / ref).is_file(), ref
    assert all(m in html for m in MODELS) and "Shape vs texture bias" in html
    try:
        import fastvit_analysis.claims  # noqa: F401
    except ImportError:
        assert "claims module not available" in done.stdout
    else:
        claims = json.loads((idle / "claims.json").read_text())
        assert {"C1", "C2", "C3", "C5", "C8"} <= {r["id"] for r in claims["rows"]}
        assert html.index("id='claims'") < html.index("<h2", html.index("id='claims'") + 1)
        assert html.index("id='claims'") < html.index("Shape vs texture bias")

    # a re-run reuses every checkpoint and result: nothing is recomputed
    mtimes = {p: p.stat().st_mtime for p in idle.glob("*/*.json")}
    assert main(["demo", "--quick", "--out", str(idle), "--no-progress", "--models", *MODELS]) == 0
    capsys.readouterr()
    stages = json.loads((idle / "demo.json").read_text())["stages"]
    assert all(s["status"] == "reused" for s in stages), stages
    assert {p: p.stat().st_mtime for p in idle.glob("*/*.json")} == mtimes


def test_forget_points_drops_partial_results_of_one_analysis(tmp_path):
    for analysis in ("landscape", "max_eigen"):
        (tmp_path / f"{analysis}_points").mkdir()
        (tmp_path / f"{analysis}_points" / "0.json").write_text("{}")
    demo._forget_points(tmp_path, "landscape")
    assert not (tmp_path / "landscape_points").exists()
    assert (tmp_path / "max_eigen_points" / "0.json").exists()


def test_smaller_images_go_through_the_train_command_and_the_demo_settings(tmp_path, capsys):
    """'synthetic:SIZE' builds the model for that side (the checkpoint records img_size, so analyses rebuild
    it); the demo's data spec and shape-bias settings are unchanged at the default 32."""
    assert demo.data_spec(32) == "synthetic" and demo.data_spec(24) == "synthetic:24"
    assert demo.shape_bias_settings(90, 0) == {"split": "conflict", "num_samples": 90, "seed": 0}
    assert demo.shape_bias_settings(90, 0, 24)["image_size"] == 24
    assert all(r["data"]["image_size"] >= 16 for r in (RECIPE, QUICK_RECIPE))
    out = tmp_path / "vit16"
    assert main(["train", "--model", "demo_vit", "--data", "synthetic:16", "--epochs", "1", "--num-samples", "16",
                 "--test-samples", "16", "--batch-size", "16", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    import torch

    assert torch.load(out / "last.pt", weights_only=False)["model_kwargs"]["img_size"] == 16

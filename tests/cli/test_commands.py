"""Each subcommand end to end in a subprocess (`python -m fastvit_analysis ...`) on tiny settings:
valid JSON with the key numbers, PNG+PDF figures, and `report` over the results of all of them.

One tiny checkpoint (a short `train` run) is shared by all tests of this module."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastvit_analysis.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--no-progress", "--seed", "0"]


def cli(*args, timeout=300):
    env = {**os.environ, "FASTVIT_PROGRESS": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "fastvit_analysis", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=timeout)


def check_outputs(folder: Path, name: str) -> dict:
    payload = json.loads((folder / f"{name}.json").read_text())
    assert payload["analysis"] == name
    assert isinstance(payload["summary"], dict) and payload["summary"]
    assert isinstance(payload["result"], dict) and payload["result"]["type"]
    for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        figure = folder / f"{name}.{ext}"
        assert figure.read_bytes()[:4] == magic, figure
        assert figure.name in payload["figures"]
    return payload


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A demo_resnet trained for one epoch on 64 embedded samples: OUT/last.pt (the `train` subcommand)."""
    out = tmp_path_factory.mktemp("cli") / "resnet"
    done = cli("train", "--model", "demo_resnet", "--data", "synthetic", "--epochs", 1, "--num-samples", 64,
               "--test-samples", 32, "--batch-size", 32, "--out", out, *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "last.pt").is_file()
    return out


def test_train_writes_checkpoint_metrics_and_figure(trained):
    payload = check_outputs(trained, "train")
    assert payload["summary"]["checkpoint"].endswith("last.pt")
    assert payload["model"] == "resnet"  # a checkpoint is labelled by its folder


@pytest.mark.parametrize("argv, name", [
    (["hessian", "--mode", "max-eigen", "--num-batches", 2, "--batch-size", 4, "--top-k", 2, "--tol", 1e-2,
      "--max-hvp", 8],
     "max_eigen"),
    (["landscape", "--steps", 3, "--num-samples", 16, "--batch-size", 16], "landscape"),
    (["fourier", "--num-samples", 16], "fourier"),
    (["variance", "--num-samples", 16], "variance"),
    (["cka", "--num-samples", 16, "--batch-size", 8], "cka"),
    (["robustness", "--num-samples", 16, "--freqs", 0.1, 0.9], "robustness"),
])
def test_analysis_subcommand(trained, argv, name):
    done = cli(*argv, "--model", trained / "last.pt", "--data", "synthetic", "--out", trained, *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"-> {trained / (name + '.json')}" in done.stdout
    payload = check_outputs(trained, name)
    summary = payload["summary"]
    if name == "max_eigen":
        values = payload["plot"]["values"]
        assert len(values) == 2 * 2 and all(isinstance(v, float) for v in values)
        assert summary["negative_fraction"]["value"] == pytest.approx(sum(v < 0 for v in values) / len(values))
    elif name == "landscape":
        loss = payload["plot"]["loss"]
        assert len(loss) == 3 and len(loss[0]) == 3
        assert summary["centre_loss"]["value"] == pytest.approx(loss[1][1], rel=1e-12)
        assert summary["min loss"] <= summary["centre_loss"]["value"]
    elif name == "fourier":
        delta = payload["plot"]["delta"]
        assert all(d[0] == 0.0 for d in delta) and summary["high_frequency/last"]["value"] == delta[-1][-1]
    elif name == "variance":
        assert all(v > 0 for v in payload["plot"]["variance"])
    elif name == "cka":
        matrix = payload["plot"]["matrix"]
        assert all(math.isclose(matrix[i][i], 1.0, rel_tol=1e-4) for i in range(len(matrix)))
    elif name == "robustness":
        assert payload["plot"]["freqs_pi"] == pytest.approx([0.1, 0.9])
        assert 0 <= summary["clean_accuracy"]["value"] <= 100


def test_hessian_spectrum_mode_on_a_model_name(tmp_path):
    """A timm name (untrained) works as --model too; the spectrum carries residuals (in-process)."""
    code = main(["hessian", "--mode", "spectrum", "--model", "demo_resnet", "--num-batches", "1",
                 "--batch-size", "4", "--top-k", "2", "--which", "LA", "--tol", "1e-2", "--max-hvp", "8",
                 "--out", str(tmp_path), *TINY])
    assert code == 0
    payload = check_outputs(tmp_path, "hessian_spectrum")
    eig = payload["plot"]["eigenvalues"]
    assert len(eig) == 2 and eig[0] >= eig[1]
    assert len(payload["plot"]["residuals"]) == 2


def test_report_over_all_results(trained):
    assert main(["report", "--out", str(trained.parent)]) == 0
    html = (trained.parent / "report.html").read_text()
    for ref in re.findall(r'(?:href|src)="([^"]+)"', html):
        if not ref.startswith("data:"):
            assert (trained.parent / ref).is_file(), ref
    assert html.count("data:image/png;base64,") >= 6


def test_checkpoint_that_does_not_fit_the_model_is_a_one_line_error(trained, capsys):
    code = main(["fourier", "--model", "demo_vit", "--checkpoint", str(trained / "last.pt"), "--num-samples", "8",
                 "--out", str(trained / "mismatch"), *TINY])
    assert code != 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastvit-analysis: error:"), err
    assert "does not match" in lines[0] and "Traceback" not in err

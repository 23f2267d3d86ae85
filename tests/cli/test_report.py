"""`fastvit-analysis report`: one self-contained HTML file from result folders, linking only files that exist."""
import base64
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastvit_analysis.cli import main
from fastvit_analysis.cli.report import build_html, find_results, write_report
from fastvit_analysis.curvature.max_eigen import MaxEigenvalueSpectrumResult
from fastvit_analysis.features.cka import CKAResult
from fastvit_analysis.features.fourier import FourierResult
from fastvit_analysis.features.noise import NoiseRobustnessResult
from fastvit_analysis.features.variance import VarianceResult
from fastvit_analysis.landscape.grid import LandscapeResult
from fastvit_analysis.plot import FIGURES

ROOT = Path(__file__).resolve().parents[2]


def _payload(analysis, model, plot, summary, figures=()):
    return {"analysis": analysis, "model": model, "model_source": f"{model}/last.pt", "data": "synthetic",
            "settings": {}, "summary": summary, "plot": plot, "result": {}, "seconds": 1.5,
            "figures": list(figures)}


def _results(shift: float) -> dict:
    """One small result object of each analysis the report compares (what the subcommands save under "result")."""
    v = torch.tensor([[-0.5 + shift, 1.0], [2.0 + shift, 3.0]], dtype=torch.float64)
    depth, names, kinds = [0.0, 0.5, 1.0], ["a", "b", "c"], ["embed", "msa", "conv"]
    a = np.array([-1.0, 0.0, 1.0])
    loss = np.array([[3, 2, 3], [2, 1 + shift, 2], [3, 2, np.nan]], dtype=float)
    return {
        "max_eigen": MaxEigenvalueSpectrumResult(v, torch.zeros_like(v), torch.ones_like(v, dtype=torch.bool),
                                           0.25, float(v[v > 0].mean()), 16, "LM", 10),
        "fourier": FourierResult(names, kinds, depth, [[0.0, 1.5, 3.14]] * 3, [[0.0, -0.1, -0.2 - shift]] * 3,
                                 [[0.0, -0.1, -0.2 - shift]] * 3),
        "variance": VarianceResult(names, kinds, depth, [1.0, 0.5, 2.0 + shift]),
        "landscape": LandscapeResult([a, a], loss, loss, np.full_like(loss, np.nan), np.zeros_like(loss)),
        "cka": CKAResult(["a", "b"], ["a", "b"], ["conv", "msa"], ["conv", "msa"], [[1.0, 0.5], [0.5, 1.0]]),
        "robustness": NoiseRobustnessResult([0.1 * math.pi, 0.5 * math.pi, 0.9 * math.pi],
                                            [-1.0, -2.0, -3.0 - shift], [89.0, 88.0, 87.0 - shift], 90.0, 0.1,
                                            0.2, 64),
    }


def _write_model(folder: Path, model: str, shift: float) -> None:
    folder.mkdir(parents=True)
    summaries = {
        "max_eigen": {"negative_fraction": 0.25, "positive_mean": 2.0 + shift},
        "fourier": {"high_frequency/last": -0.4 - shift, "high_frequency/b": -0.3},
        "variance": {"variance/last": 2.0 + shift},
        "landscape": {"centre_loss": 1.0 + shift},
        "cka": {"mean CKA": 0.5},
        "robustness": {"delta_accuracy/high": -3.0 - shift},
    }
    for analysis, result in _results(shift).items():
        fig = FIGURES[analysis]({model: result})
        fig.savefig(folder / f"{analysis}.png")
        # the PDF is listed but deliberately missing: the report must not link to it
        payload = _payload(analysis, model, {}, summaries[analysis], figures=[f"{analysis}.png", f"{analysis}.pdf"])
        payload["result"] = result.to_dict()
        (folder / f"{analysis}.json").write_text(json.dumps(payload))


@pytest.fixture()
def results_dir(tmp_path):
    _write_model(tmp_path / "resnet", "resnet", 0.0)
    _write_model(tmp_path / "vit", "vit", 1.0)
    (tmp_path / "vit" / "notes.json").write_text("[1, 2]")        # not a result: ignored
    (tmp_path / "vit" / "broken.json").write_text("{not json")     # unreadable: ignored
    return tmp_path


def _references(text: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]+)"', text)


def test_report_embeds_figures_and_links_only_existing_files(results_dir):
    target = write_report(results_dir)
    text = target.read_text()
    refs = _references(text)
    local = [r for r in refs if not r.startswith("data:")]
    assert local, "expected links to the JSON results"
    for ref in local:
        assert (target.parent / ref).is_file(), ref
    assert not any(r.endswith(".pdf") and "report_figures" not in r for r in local)
    images = [r for r in refs if r.startswith("data:image/png;base64,")]
    # 6 analyses x 2 models, plus one comparison figure per analysis
    assert len(images) == 6 * 2 + 6
    png = base64.b64decode(images[0].split(",", 1)[1])
    assert png.startswith(b"\x89PNG")
    for model in ("resnet", "vit"):
        assert model in text
    assert "At a glance" in text and "0.25" in text


def test_report_finds_results_in_subfolders_only(results_dir):
    found = find_results(results_dir)
    assert sorted(p["analysis"] for _, p in found) == sorted(["max_eigen", "fourier", "variance", "landscape",
                                                              "cka", "robustness"] * 2)


def test_report_of_empty_directory_says_so(tmp_path):
    text, count = build_html(tmp_path, tmp_path / "report.html", "t")
    assert count == 0 and "No results found" in text


def test_report_missing_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "nope")]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastvit-analysis: error:") and "nope" in lines[0]


def test_report_subprocess(results_dir, tmp_path):
    env_cmd = [sys.executable, "-m", "fastvit_analysis", "report", "--out", str(results_dir),
               "--html", str(tmp_path / "elsewhere" / "r.html")]
    done = subprocess.run(env_cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "elsewhere" / "r.html").read_text()
    for ref in _references(text):
        if not ref.startswith("data:"):
            assert (tmp_path / "elsewhere" / ref).is_file(), ref



def test_report_names_unreadable_files_and_compares_only_rebuilt_results(results_dir):
    (results_dir / "vit" / "fourier.json").write_text(json.dumps(
        _payload("fourier", "vit", {}, {"dlogamp at pi, mean": -0.3}) | {"result": {"type": "FourierResult"}}))
    text, _ = build_html(results_dir, results_dir / "report.html", "t")
    unreadable = text[text.index("Files that could not be read"):]
    assert "broken.json" in unreadable and "notes.json" not in unreadable
    assert "compare_fourier" not in text and "compare_variance" in text  # one fourier result left to draw

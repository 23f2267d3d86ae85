"""`fastvit-analysis report`: one self-contained HTML file from result folders, linking only files that exist."""
import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastvit_analysis.cli import main, plots
from fastvit_analysis.cli.report import build_html, find_results, write_report

ROOT = Path(__file__).resolve().parents[1]


def _payload(analysis, model, plot, summary, figures=()):
    return {"analysis": analysis, "model": model, "model_source": f"{model}/last.pt", "data": "synthetic",
            "settings": {}, "summary": summary, "plot": plot, "result": {}, "seconds": 1.5,
            "figures": list(figures)}


def _write_model(folder: Path, model: str, shift: float) -> None:
    folder.mkdir(parents=True)
    depth = [0.0, 0.5, 1.0]
    results = {
        "max_eigen": ({"values": [-0.5 + shift, 1.0, 2.0 + shift, 3.0]},
                      {"negative_fraction": 0.25, "positive_mean": 2.0 + shift}),
        "fourier": ({"names": ["a", "b", "c"], "kinds": ["embed", "msa", "conv"], "depth": depth,
                     "freqs": [[0.0, 1.5, 3.14]] * 3, "delta": [[0.0, -0.1, -0.2 - shift]] * 3,
                     "high": [-0.2, -0.3, -0.4 - shift]},
                    {"high_frequency/last": -0.4 - shift, "high_frequency/b": -0.3}),
        "variance": ({"names": ["a", "b", "c"], "kinds": ["embed", "msa", "conv"], "depth": depth,
                      "variance": [1.0, 0.5, 2.0 + shift]}, {"variance/last": 2.0 + shift}),
        "landscape": ({"dims": 2, "coords": [[-1, 0, 1], [-1, 0, 1]],
                       "loss": [[3, 2, 3], [2, 1 + shift, 2], [3, 2, "nan"]], "accuracy": None},
                      {"centre_loss": 1.0 + shift}),
        "cka": ({"matrix": [[1.0, 0.5], [0.5, 1.0]], "names_a": ["a", "b"], "names_b": ["a", "b"]},
                {"mean CKA": 0.5}),
        "robustness": ({"freqs_pi": [0.1, 0.5, 0.9], "delta_acc": [-1.0, -2.0, -3.0 - shift],
                        "clean_accuracy": 0.9}, {"delta_accuracy/high": -3.0 - shift}),
    }
    for analysis, (plot, summary) in results.items():
        fig = plots.FIGURES[analysis]([(model, plot)])
        fig.savefig(folder / f"{analysis}.png")
        plots.plt.close(fig)
        # the PDF is listed but deliberately missing: the report must not link to it
        payload = _payload(analysis, model, plot, summary, figures=[f"{analysis}.png", f"{analysis}.pdf"])
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


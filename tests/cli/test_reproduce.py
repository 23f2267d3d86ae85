"""`fastvit-analysis reproduce`: the paper preset's sizes, its errors, and the --tiny run end to end through
the same stages (train, spectra at warm-up and end, landscape, features, robustness, shape bias, claims)."""
import json

from fastvit_analysis.cli import main
from fastvit_analysis.cli.reproduce import PRESETS, STAGES


def test_paper_preset_is_the_papers_study():
    paper = PRESETS["paper"]
    assert paper["roles"] == {"cnn": "preact_resnet50_cifar", "vit": "vit_ti_cifar", "alternet": "alternet50_cifar"}
    me = paper["max_eigen"]
    assert me["batch_size"] == 16 and me["num_batches"] == 50000 // 10 // 16 and me["weight_decay"] == 0.05
    assert paper["train"]["warmup_epochs"] == 5 and paper["train"]["batch_size"] == 96
    assert paper["landscape"]["steps"] == 21 and paper["landscape"]["l2_coef"] == 0.05


def test_paper_preset_needs_data_and_known_stages(capsys, tmp_path):
    assert main(["reproduce", "--out", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["reproduce", "--tiny", "--stages", "nope", "--out", str(tmp_path)]) == 2
    assert "--stages" in capsys.readouterr().err


def test_tiny_reproduce_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["reproduce", "--tiny", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "claims" in text
    for model in PRESETS["tiny"]["roles"].values():
        for name in ("train", "warmup/max_eigen", "max_eigen", "landscape", "fourier", "variance", "cka",
                     "robustness", "shape_bias"):
            assert json.loads((out / model / f"{name}.json").read_text())["summary"], (model, name)
    assert (out / "report.html").is_file()
    try:
        import fastvit_analysis.claims  # noqa: F401
    except ImportError:
        pass
    else:
        assert json.loads((out / "claims.json").read_text())["rows"]
    # resumable stage by stage: a second run recomputes nothing
    mtimes = {p: p.stat().st_mtime for p in out.glob("*/*.json")}
    assert main(["reproduce", "--tiny", "--out", str(out), "--no-progress", "--stages", *STAGES[:-1]]) == 0
    assert "done" not in [line.split()[-1] for line in capsys.readouterr().out.splitlines() if "reproduce [" in line]
    assert {p: p.stat().st_mtime for p in out.glob("*/*.json")} == mtimes

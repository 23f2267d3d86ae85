"""The `hessian` subcommand: --per-block, --curvature, world_size and 'not converged' in the line,
max_hvp < top_k as a one-line error (in-process)."""
from __future__ import annotations

import json

import pytest

from fastvit_analysis.cli import main

TINY = ["--device", "cpu", "--no-progress", "--seed", "0", "--model", "demo_resnet", "--batch-size", "4",
        "--num-batches", "1"]


def test_max_eigen_with_max_hvp_below_top_k_is_a_one_line_error(tmp_path, capsys):
    code = main(["hessian", "--mode", "max-eigen", "--top-k", "3", "--max-hvp", "2", "--out", str(tmp_path), *TINY])
    err = capsys.readouterr().err
    assert code != 0 and "max_hvp must be an int >= top_k=3" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_spectrum_line_says_world_size_and_not_converged(tmp_path, capsys):
    code = main(["hessian", "--mode", "spectrum", "--top-k", "2", "--max-hvp", "2", "--tol", "1e-9",
                 "--out", str(tmp_path), *TINY])
    out = capsys.readouterr().out
    assert code == 0
    assert "world_size=1" in out and "not converged=" in out
    summary = json.loads((tmp_path / "hessian_spectrum.json").read_text())["summary"]
    assert summary["world_size"] == 1 and summary["not converged"] >= 1


@pytest.mark.parametrize("curvature", ["ggn", "fisher"])
def test_trace_of_ggn_and_fisher(tmp_path, capsys, curvature):
    code = main(["hessian", "--mode", "trace", "--curvature", curvature, "--num-probes", "3",
                 "--out", str(tmp_path), *TINY])
    assert code == 0
    summary = json.loads((tmp_path / "hessian_trace.json").read_text())["summary"]
    assert summary["curvature"] == curvature and summary["trace"]["value"] > 0   # both are PSD


def test_per_block_writes_one_figure_and_every_block(tmp_path, capsys):
    code = main(["hessian", "--mode", "spectrum", "--per-block", "--top-k", "1", "--max-hvp", "3",
                 "--num-probes", "3", "--out", str(tmp_path), *TINY])
    assert code == 0
    payload = json.loads((tmp_path / "block_spectra.json").read_text())
    assert payload["summary"]["blocks"] == len(payload["plot"]["blocks"]) >= 2
    assert (tmp_path / "block_spectra.png").is_file()
    code = main(["hessian", "--mode", "trace", "--per-block", "--out", str(tmp_path), *TINY])
    assert code != 0 and "--per-block: only with --mode spectrum" in capsys.readouterr().err

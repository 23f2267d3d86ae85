"""Bad arguments: exit non-zero with one line `fastvit-analysis: error: ...`, never a traceback;
`--help` of every subcommand shows examples."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastvit_analysis.cli import main
from fastvit_analysis.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ["train", "hessian", "landscape", "fourier", "variance", "cka", "robustness", "report", "demo",
               "selfcheck"]


def run_main(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit from inside parse_args
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code, err, *words):
    assert code not in (0, None), err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastvit-analysis: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"fastvit-analysis {command}" in out


@pytest.mark.parametrize("argv, words", [
    (["fourier", "--model", "no_such_model_xyz"], ["unknown model", "no_such_model_xyz"]),
    (["fourier", "--model", "runs/missing/last.pt"], ["does not exist", "last.pt"]),
    (["fourier", "--model", "demo_resnet", "--data", "cifar10:/no/such/dir"], ["/no/such/dir", "does not exist"]),
    (["fourier", "--model", "demo_resnet", "--data", "mnist"], ["unknown data spec", "mnist"]),
    (["fourier", "--model", "demo_resnet", "--data", "cifar100"], ["needs a local path"]),
    (["hessian", "--model", "demo_resnet", "--top-k", "0"], ["--top-k", "positive integer"]),
    (["hessian", "--model", "demo_resnet", "--mode", "eigen"], ["--mode", "invalid choice"]),
    (["landscape", "--model", "demo_resnet", "--steps", "1"], ["--steps", "at least 2"]),
    (["landscape", "--model", "demo_resnet", "--span", "1", "-1"], ["--span", "LO < HI"]),
    (["robustness", "--model", "demo_resnet", "--freqs", "1.5"], ["--freqs", "(0, 1]"]),
    (["robustness", "--model", "demo_resnet", "--eps", "-0.1"], ["--eps"]),
    (["cka", "--model", "demo_resnet", "--batch-size", "2"], ["at least 4"]),
    (["fourier", "--data", "synthetic"], ["--model", "required"]),
    (["nonsense"], ["invalid choice"]),
])
def test_bad_arguments_are_one_line_errors(argv, words, capsys, tmp_path):
    code, err = run_main([*argv, "--out", str(tmp_path)] if argv[0] != "nonsense" else argv, capsys)
    assert_one_line_error(code, err, *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_a_device(capsys, tmp_path):
    code, err = run_main(["fourier", "--model", "demo_resnet", "--device", "cuda", "--out", tmp_path], capsys)
    assert_one_line_error(code, err, "--device cuda", "no CUDA")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        main(["fourier", "--model", "no_such_model_xyz", "--out", str(tmp_path), "--debug"])


def test_subprocess_error_has_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "fastvit_analysis", "landscape", "--model", "no_such_model_xyz",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode != 0
    assert_one_line_error(done.returncode, done.stderr, "unknown model")

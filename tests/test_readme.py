"""The README's two commands are the contract with users and CI: keep them true."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_starts_with_demo_and_test_commands():
    demo, test = _readme_commands()
    assert demo.endswith("fastvit-analysis demo")
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_test_command():
    _, test = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, "'.ci/run' must run the README's test command verbatim"


def test_torch_is_not_a_build_requirement():
    pyproject = (ROOT / "pyproject.toml").read_text()
    build = pyproject.split("[build-system]", 1)[1].split("[project]", 1)[0]
    assert "torch" not in build.split("requires", 1)[1].split("]", 1)[0]

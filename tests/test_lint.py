"""The code passes the project's ruff rules ([tool.ruff] in pyproject.toml): CI installs ruff with the
`test` extra, so `python -m pytest -q tests` runs the same check as `python -m ruff check ...`."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["fastvit_analysis", "bench", "tools", "tests"]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason="ruff is not installed (pip install -e '.[test]' installs the pinned version)")
def test_ruff_check_passes():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *PATHS], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]

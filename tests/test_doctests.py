"""Every docstring example of the package runs: the doctests of each module, found as
`python -m pytest --doctest-modules fastvit_analysis` finds them (every .py file, ELLIPSIS on), so that
`python -m pytest -q tests` (CI) checks them too. No example may be switched off with +SKIP."""
import doctest
import importlib
import re
from pathlib import Path

import pytest

import fastvit_analysis

PACKAGE = Path(fastvit_analysis.__file__).parent
FLAGS = doctest.ELLIPSIS  # pytest's default doctest_optionflags


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = sorted(PACKAGE.rglob("*.py"))
WITH_EXAMPLES = [p for p in FILES if ">>>" in p.read_text(encoding="utf-8")]


def test_the_package_has_docstring_examples():
    assert len(WITH_EXAMPLES) >= 40, [str(p) for p in WITH_EXAMPLES]


@pytest.mark.parametrize("path", WITH_EXAMPLES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_docstring_examples_run(path):
    module = importlib.import_module(_module_name(path))
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{path}: has '>>>' but no docstring example the doctest finder sees"
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test, out=out.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(out)[-6000:]


def test_no_example_is_skipped():
    skipped = [f"{p.relative_to(PACKAGE.parent)}:{i}" for p in FILES
               for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
               if re.search(r"doctest:\s*\+SKIP", line)]
    assert not skipped, f"docstring examples switched off with +SKIP: {skipped}"

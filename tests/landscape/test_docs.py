"""The examples in the landscape and sweep docstrings run and give what they show."""
import doctest
import importlib

import pytest

MODULES = ["fastvit_analysis.sweep", "fastvit_analysis.landscape.directions", "fastvit_analysis.landscape.grid",
           "fastvit_analysis.landscape.trajectory", "fastvit_analysis.plot.landscape"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0

"""Every result class rebuilds itself from its `to_dict()` (what the report reads back from JSON)."""
import json

import pytest
import torch

from fastvit_analysis.common.results import _RESULT_MODULES, load_result
from tests.result_cases import cases, same


@pytest.mark.parametrize("name", sorted(_RESULT_MODULES))
def test_from_dict_round_trips_through_json(name):
    result = cases()[name]
    assert type(result).__name__ == name
    data = json.loads(json.dumps(result.to_dict()))      # the JSON a result file holds (NaN -> null)
    again = type(result).from_dict(data)
    assert same(again, result), name
    assert same(load_result(data, kind=name), result)
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())


def test_same_is_not_vacuous():
    r = cases()["MaxEigenvalueSpectrumResult"]
    other = type(r).from_dict(r.to_dict())
    other.eigenvalues[0, 0] += 1.0
    assert not same(other, r)


def test_bool_and_nan_fields_come_back_typed():
    r = load_result(json.loads(json.dumps(cases()["HessianSpectrumResult"].to_dict())))
    assert r.converged.dtype == torch.bool and r.eigenvalues.dtype == torch.float64
    trace = cases()["HessianTraceResult"]
    d = trace.to_dict() | {"stderr": None}
    assert load_result(d).stderr != load_result(d).stderr  # null -> NaN


def test_wrong_or_unknown_type_is_a_one_line_error():
    d = cases()["HessianTraceResult"].to_dict()
    from fastvit_analysis.curvature.density import HessianDensityResult

    with pytest.raises(ValueError, match="HessianTraceResult, not a HessianDensityResult"):
        HessianDensityResult.from_dict(d)
    with pytest.raises(ValueError, match="unknown result type"):
        load_result({"type": "Nope"})
    with pytest.raises(ValueError, match="needs the entry 'value'"):
        load_result({k: v for k, v in d.items() if k != "value"})

"""bench/gpu_suite.py cannot run its real sizes here; --tiny runs every section's code path on CPU."""
import json

import pytest
import torch

from bench import gpu_suite


@pytest.mark.parametrize("section", ["attention", "hvp_vit", "hvp_per_vector", "feature_stats", "landscape",
                                     "max_eigen"])
def test_each_section_runs_in_tiny_mode(section, tmp_path, one_thread):
    out = tmp_path / "suite.json"
    result = gpu_suite.run_suite(device="cpu", tiny=True, sections=[section], out=str(out))
    entries = result["sections"][section]["entries"]
    assert entries and not [e for e in entries if "error" in e or "skipped" in e], entries
    assert all(e["ratio"] is not None and e["ratio"] > 0 for e in entries if "ratio" in e)
    saved = json.loads(out.read_text())
    assert saved["device"] == gpu_suite.device_slug(torch.device("cpu"))
    assert saved["sections"][section]["entries"][0]["case"] == entries[0]["case"]


def test_a_closed_section_records_skips_not_work():
    sec = gpu_suite.Section("x", cap_s=0.0)
    ran = []
    sec.run("case", lambda: ran.append(1) or {})
    assert ran == [] and sec.entries == [{"case": "case", "skipped": "time cap 0 s reached"}]


def test_a_failing_case_is_recorded_and_the_section_goes_on():
    sec = gpu_suite.Section("x", cap_s=60.0)
    sec.run("bad", lambda: 1 / 0)
    sec.run("good", lambda: {"ratio": 2.0})
    assert sec.entries[0]["error"].startswith("ZeroDivisionError") and sec.entries[1]["ratio"] == 2.0


def test_caps_fit_the_eight_minute_budget_and_names_are_checked():
    assert sum(gpu_suite.CAPS.values()) <= 8 * 60 - 30
    with pytest.raises(ValueError, match="sections: unknown"):
        gpu_suite.run_suite(device="cpu", tiny=True, sections=["nope"])

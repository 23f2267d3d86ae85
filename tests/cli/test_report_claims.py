"""The report opens with the claims table of OUT/claims.json (contrast, interval, verdict), before the figures."""
import json

from fastvit_analysis.cli.demo import claims_text
from fastvit_analysis.cli.report import write_report

CLAIMS = {"roles": {"cnn": "r", "vit": "v", "alternet": "a"}, "rows": [
    {"id": "C2", "title": "non-convexity", "contrast": {"value": 0.125, "ci95": [0.05, 0.2], "n": 64},
     "expected_sign": 1, "verdict": "supported", "detail": "v 0.3, r 0.175"},
    {"id": "C5", "title": "texture robustness", "contrast": {"value": -1.5, "ci95": [-4.0, 1.0], "n": 2000},
     "expected_sign": 1, "verdict": "inconclusive", "detail": "paired"},
    {"id": "C1", "title": "flatness", "contrast": None, "expected_sign": -1, "verdict": "not measured",
     "detail": "landscape of 'v'"}]}


def test_claims_table_opens_the_report(tmp_path):
    (tmp_path / "claims.json").write_text(json.dumps(CLAIMS))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "shape_bias.json").write_text(json.dumps(
        {"analysis": "shape_bias", "model": "m",
         "summary": {"shape bias": {"value": 0.6, "ci95": [0.46, 0.72], "n": 50}}}))
    html = (write_report(tmp_path)).read_text()
    start = html.index("id='claims'")
    assert start < html.index("<h2", start + 1) and start < html.index("Shape vs texture bias")
    table = html[start:html.index("</table>", start)]
    assert "0.125 [0.05, 0.2]" in table and "supported" in table and "64" in table
    assert "-1.5 [-4, 1]" in table and "inconclusive" in table and "not measured" in table
    assert table.index("C2") < table.index("C5") < table.index("C1")
    assert "0.6 [0.46, 0.72]" in html  # Estimates in the tables carry their interval


def test_no_claims_json_no_claims_section(tmp_path):
    assert "id='claims'" not in write_report(tmp_path).read_text()


def test_claims_text():
    text = claims_text(CLAIMS)
    lines = text.splitlines()
    assert lines[2].startswith("C2") and "0.125 [0.05, 0.2] (n=64)" in lines[2] and "supported" in lines[2]
    assert lines[4].startswith("C1") and "not measured" in lines[4]

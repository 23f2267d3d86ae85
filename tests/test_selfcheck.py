"""fa.selfcheck(): every available backend (eager, compiled CPU ext, Triton interpreter in a
subprocess) against torch.fft / math SDPA; it must pass here and fail when a backend is wrong."""
import importlib
import json

import pytest
import torch

import fastvit_analysis as fa

sc = importlib.import_module("fastvit_analysis.selfcheck")  # the module (fa.selfcheck is the function)

MASKED = "fully-masked row"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("selfcheck") / "selfcheck.json"
    return fa.selfcheck(json_path=str(path)), path


def test_selfcheck_lists_backends_and_passes_on_cpu(full_run):
    result, path = full_run
    assert result.backends["eager"] == "yes"
    assert set(result.backends) == {"eager", "compiled CPU ext", "CUDA ext", "triton"}
    backends = {row.backend for row in result.rows}
    assert {"eager/cpu", "patched ViT/cpu"} <= backends
    assert ("eager/cpu", "jvp") in {(row.backend, row.check) for row in result.rows}  # attention, eager path
    if result.backends["compiled CPU ext"] == "yes":
        assert "compiled/cpu" in backends
    if result.backends["triton"].startswith("yes"):
        assert "triton/cpu" in backends
    checks = {row.check for row in result.rows}
    assert {"forward", "backward", "jvp", "double backward", "vmap over tangents", MASKED,
            "diag_log_amplitude", "feature_moments", "HVP vs math SDPA"} <= checks
    bad = [f"{r.backend} {r.check} {r.case}: {r.error} {r.detail}" for r in result.rows
           if not r.ok and r.check != MASKED]
    assert not bad, bad
    saved = json.loads(path.read_text())
    assert len(saved["rows"]) == len(result.rows) and saved["ok"] == result.ok
    assert "selfcheck:" in result.table()


def test_selfcheck_fully_masked_rows_give_zero_and_finite_grads(full_run):
    result, _ = full_run
    rows = [r for r in result.rows if r.check == MASKED]
    assert rows and all(r.ok for r in rows), [(r.backend, r.case, r.error) for r in rows]
    assert result.ok


def test_selfcheck_fails_when_a_feature_op_is_wrong(monkeypatch):
    from fastvit_analysis.ops import feature_stats

    real = feature_stats._feature_moments_eager
    monkeypatch.setattr(feature_stats, "_feature_moments_eager",
                        lambda maps: tuple(t * 1.01 for t in real(maps)))
    result = fa.selfcheck(triton=False, hvp=False)
    wrong = [r for r in result.rows if r.backend == "eager/cpu" and r.check == "feature_moments"]
    assert wrong and not any(r.ok for r in wrong)
    assert all(r.ok for r in result.rows if r.check == "diag_log_amplitude")
    assert not result.ok


def test_selfcheck_fails_when_attention_is_wrong(monkeypatch):
    from fastvit_analysis.attention import fused

    real = fused.AttentionFunction.apply

    def off_by_a_bit(*args):
        out, lse = real(*args)
        return out + 1e-3, lse
    monkeypatch.setattr(fused.AttentionFunction, "apply", off_by_a_bit)
    rows = []
    sc._attention_rows(rows, "eager", torch.device("cpu"), (torch.float64,))
    forward = [r for r in rows if r.check == "forward"]
    assert forward and not any(r.ok for r in forward)
    assert any(r.ok for r in rows if r.check == "backward")  # a shift leaves the gradients exact


def test_a_raising_check_is_a_failed_row_not_a_crash():
    rows = []
    sc._run(rows, "x", "boom", "-", 1.0, lambda: (_ for _ in ()).throw(RuntimeError("kaput\nmore")))
    assert rows[0].ok is False and rows[0].detail == "RuntimeError: kaput"


@pytest.mark.parametrize("ok, code", [(True, 0), (False, 1)])
def test_cli_selfcheck_prints_the_table_and_exits_by_result(monkeypatch, capsys, tmp_path, ok, code):
    from fastvit_analysis.cli.main import main

    row = sc.CheckRow("eager/cpu", "forward", "1x1", 0.0 if ok else 1.0, 1e-3, ok, 0.0)
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        return sc.SelfCheckResult({"eager": "yes"}, [row])
    monkeypatch.setattr(sc, "selfcheck", fake)
    assert main(["selfcheck", "--no-triton", "--json", str(tmp_path / "s.json")]) == code
    out = capsys.readouterr().out
    assert "eager/cpu" in out and "selfcheck: %d/1 checks passed" % int(ok) in out
    assert seen == {"triton": False, "json_path": str(tmp_path / "s.json"), "bench": False}


def test_cli_selfcheck_bench_without_cuda_is_a_one_line_error(monkeypatch, capsys):
    from fastvit_analysis.cli.main import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sc, "_attention_rows", lambda *a, **k: None)
    monkeypatch.setattr(sc, "_feature_rows", lambda *a, **k: None)
    monkeypatch.setattr(sc, "_hvp_row", lambda *a, **k: None)
    assert main(["selfcheck", "--bench", "--no-triton"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a CUDA device" in err[0]

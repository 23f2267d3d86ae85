"""Files (issue 12.7, 12.9, 12.10): umask modes, null for NaN, writability checked before computing,
one-line OSErrors that keep the result, an advisory lock per output folder (two processes), report
lists unreadable files, --timeout reaches init_process_group, a provenance block in every JSON."""
from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from fastvit_analysis import run_sweep
from fastvit_analysis.cli import main
from fastvit_analysis.common import jsonio
from fastvit_analysis.common.results import nan_for_none, to_jsonable
from fastvit_analysis.common.store import FolderBusyError, OutputFolderError, check_writable, folder_lock

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "demo_resnet", "--data", "synthetic", "--num-samples", "8", "--batch-size", "8",
        "--freqs", "0.5", "--device", "cpu", "--no-progress"]


@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    try:
        yield 0o664
    finally:
        os.umask(old)


def test_nan_and_inf_are_json_null_and_read_back_as_nan(tmp_path):
    value = to_jsonable({"a": torch.tensor([1.0, float("nan")]), "b": float("-inf"), "c": [float("inf")]})
    assert value == {"a": [1.0, None], "b": None, "c": [None]}
    text = json.dumps(value, allow_nan=False)  # standard JSON: no NaN literal, no "nan" string
    assert "nan" not in text.lower() and "inf" not in text.lower()
    assert math.isnan(nan_for_none(None)) and nan_for_none([2.0, None])[0] == 2.0


def test_result_files_get_the_umask_mode_not_0600(tmp_path, umask_002):
    path = tmp_path / "r.json"
    jsonio.atomic_write_text(path, "{}")
    assert path.stat().st_mode & 0o777 == umask_002
    assert jsonio.default_file_mode() == umask_002
    os.umask(0o077)
    jsonio.atomic_write_text(path, "{}")
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_two_writers_never_share_a_temporary_file(tmp_path):
    names = {jsonio.unique_temp_path(tmp_path / "last.pt")[1] for _ in range(5)}
    assert len(names) == 5 and all(Path(n).parent == tmp_path for n in names)


def _fail_writes(monkeypatch, code):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_unwritable_out_is_refused_before_any_point_is_computed(tmp_path, monkeypatch, code):
    calls = []
    _fail_writes(monkeypatch, code)
    with pytest.raises(OutputFolderError, match=os.strerror(code)):
        run_sweep(lambda pts: calls.append(pts) or [{} for _ in pts], [1, 2], out=tmp_path / "o", progress=False)
    assert calls == []
    with pytest.raises(OutputFolderError, match="not writable"):
        check_writable(tmp_path)


def test_cli_unwritable_out_is_one_line_before_computing(tmp_path, monkeypatch, capsys):
    _fail_writes(monkeypatch, errno.EROFS)
    assert main(["robustness", *TINY, "--out", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "Read-only file system" in err[0], err


def test_cli_full_disk_after_computing_keeps_the_result(tmp_path, monkeypatch, capsys):
    from fastvit_analysis.cli import _common

    def full(path, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(_common, "write_json", full)
    out = tmp_path / "full"
    assert main(["robustness", *TINY, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "robustness [demo_resnet] clean_accuracy=" in captured.out  # the summary is reported
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "kept in" in err[0], err
    spare = Path(err[0].split("kept in ")[1].split(";")[0].strip())
    try:
        payload = json.loads(spare.read_text())
        assert payload["analysis"] == "robustness" and payload["summary"]
    finally:
        spare.unlink()


def test_cli_json_records_provenance_and_stale_folder_names_no_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["robustness", *TINY, "--out", str(out)]) == 0
    payload = json.loads((out / "robustness.json").read_text())
    prov = payload["provenance"]
    assert prov["torch"] == torch.__version__ and prov["python"].count(".") == 2
    assert prov["package"] and prov["timm"] and prov["created_utc"].endswith("+00:00")
    assert prov["device"] == "cpu" and prov["world_size"] == 1 and prov["checkpoint"] is None
    assert prov["data"] == {"spec": "synthetic", "num_samples": 8}
    assert (out / "robustness.json").stat().st_mode & 0o777 == jsonio.default_file_mode()
    capsys.readouterr()
    assert main(["robustness", *TINY, "--eps", "0.3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "setting eps (stored 0.1, now 0.3)" in err[0] and "--no-resume" in err[0], err
    assert "resume=False" not in err[0]
    assert main(["robustness", *TINY, "--eps", "0.3", "--no-resume", "--out", str(out)]) == 0


LOCK_HOLDER = """
import sys, time
from fastvit_analysis.common.store import folder_lock
with folder_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold_lock(folder: Path, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_into_the_same_folder_is_refused_or_waits(tmp_path, capsys):
    proc = _hold_lock(tmp_path, 3.0)
    try:
        with pytest.raises(FolderBusyError, match="in use by another running process"):
            run_sweep(lambda pts: [{} for _ in pts], [1], out=tmp_path, progress=False)
        assert main(["robustness", *TINY, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another running process" in err[0] and "--wait" in err[0], err
        start = time.monotonic()
        with folder_lock(tmp_path, wait=True):  # waits for the holder to finish
            assert proc.poll() is not None or time.monotonic() - start > 0.5
    finally:
        proc.wait(timeout=30)
    with folder_lock(tmp_path):  # free again; re-entrant within one process
        with folder_lock(tmp_path):
            pass


def test_report_lists_every_file_it_could_not_read(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "fourier.json").write_text('{"analysis": "fourier", "summary": {}')  # cut short
    (tmp_path / "m" / "ok.json").write_text('{"analysis": "variance", "summary": {"v": null}}')
    assert main(["report", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "report: 1 result files" in out
    assert f"could not read {tmp_path / 'm' / 'fourier.json'}: not valid JSON" in out


def test_timeout_reaches_init_process_group(monkeypatch):
    import torch.distributed as dist

    from fastvit_analysis.cli import _common
    from fastvit_analysis.cli.main import build_parser

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: seen.update(kw))
    args = build_parser().parse_args(["robustness", "--model", "demo_resnet", "--timeout", "42"])
    assert args.timeout == 42.0
    _common.init_distributed(torch.device("cpu"), args.timeout)
    assert seen["timeout"].total_seconds() == 42.0 and seen["backend"] == "gloo"
    assert build_parser().parse_args(["fourier", "--model", "x"]).timeout == 600.0

"""run_sweep: in-order results, resume after a kill, cut lines, meta checks, bad input."""
import json

import pytest

from fastvit_analysis import run_sweep


class Counter:
    """evaluate() that squares points, counts what it computes, and can 'die' after k points."""

    def __init__(self, die_after=None):
        self.evaluated = []
        self.die_after = die_after

    def __call__(self, pts):
        if self.die_after is not None and len(self.evaluated) + len(pts) > self.die_after:
            raise KeyboardInterrupt("killed")
        self.evaluated.extend(pts)
        return [{"sq": p[0] ** 2 + p[1], "vec": [p[0], float("nan")]} for p in pts]


POINTS = [(i, j) for i in range(4) for j in range(3)]


def test_in_memory_results_in_order():
    res = run_sweep(Counter(), POINTS, per_pass=5, progress=False)
    assert [r["sq"] for r in res] == [i * i + j for i, j in POINTS]
    assert res[0]["vec"] == [0, None]  # JSON-safe values (NaN -> null), same as after a resume


@pytest.mark.parametrize("chunk", [1, 2])
def test_resume_after_kill_only_missing_points(tmp_path, chunk):
    full = run_sweep(Counter(), POINTS, per_pass=chunk, progress=False)
    dying = Counter(die_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(dying, POINTS, out=tmp_path, per_pass=chunk, meta={"m": 1}, progress=False)
    finished = len(dying.evaluated)
    assert finished == 5 - 5 % chunk
    again = Counter()
    res = run_sweep(again, POINTS, out=tmp_path, per_pass=chunk, meta={"m": 1}, progress=False)
    assert res == full
    assert len(again.evaluated) == len(POINTS) - finished
    assert set(again.evaluated).isdisjoint(dying.evaluated)
    third = Counter()
    assert run_sweep(third, POINTS, out=tmp_path, per_pass=chunk, meta={"m": 1}, progress=False) == full
    assert third.evaluated == []


def test_line_cut_by_a_kill_is_ignored_and_recomputed(tmp_path):
    full = run_sweep(Counter(), POINTS, out=tmp_path, progress=False)
    log = tmp_path / "points.rank0.jsonl"
    text = log.read_text()
    log.write_text(text[:-20])  # the last record loses its end (and its newline)
    again = Counter()
    assert run_sweep(again, POINTS, out=tmp_path, progress=False) == full
    assert again.evaluated == [POINTS[-1]]
    # the re-run started on a fresh line, so its record is readable and nothing is recomputed next time
    third = Counter()
    assert run_sweep(third, POINTS, out=tmp_path, progress=False) == full
    assert third.evaluated == []
    # garbage and foreign JSON lines are skipped too
    with open(log, "a") as f:
        f.write("not json\n[1, 2]\n{\"key\": 3}\n")
    assert run_sweep(Counter(), POINTS, out=tmp_path, progress=False) == full


def test_other_sweep_in_out_dir_is_refused(tmp_path):
    run_sweep(Counter(), POINTS, out=tmp_path, meta={"model": "a"}, progress=False)
    with pytest.raises(ValueError, match=r"another sweep \(differs in: model\); rerun with resume=False"):
        run_sweep(Counter(), POINTS, out=tmp_path, meta={"model": "b"}, progress=False)
    with pytest.raises(ValueError, match="another sweep.*points"):
        run_sweep(Counter(), POINTS[:-1], out=tmp_path, meta={"model": "a"}, progress=False)
    shuffled = POINTS[::-1]  # same count, other order/keys -> other sweep
    with pytest.raises(ValueError, match="points_sha256"):
        run_sweep(Counter(), shuffled, out=tmp_path, meta={"model": "a"}, progress=False)
    c = Counter()
    run_sweep(c, POINTS, out=tmp_path, meta={"model": "b"}, resume=False, progress=False)
    assert len(c.evaluated) == len(POINTS)
    assert json.loads((tmp_path / "meta.json").read_text())["model"] == "b"
    (tmp_path / "meta.json").write_text("{broken")
    with pytest.raises(ValueError, match="meta.json \\(it is not valid JSON\\)"):
        run_sweep(Counter(), POINTS, out=tmp_path, meta={"model": "b"}, progress=False)


def test_bad_inputs():
    with pytest.raises(ValueError, match="per_pass"):
        run_sweep(Counter(), POINTS, per_pass=0)
    with pytest.raises(ValueError, match="unique"):
        run_sweep(Counter(), [(1, 1), (1, 1)])
    with pytest.raises(ValueError, match="evaluate returned 1 results for 2 points"):
        run_sweep(lambda pts: [{}], POINTS, per_pass=2, progress=False)
    with pytest.raises(TypeError, match="evaluate"):
        run_sweep(None, POINTS)
    assert run_sweep(Counter(), [], progress=False) == []


def test_progress_bar_on_rank0(monkeypatch, capsys):
    monkeypatch.setenv("FASTVIT_PROGRESS", "1")
    res = run_sweep(Counter(), POINTS, per_pass=4, desc="mysweep", progress=True)
    assert len(res) == len(POINTS)
    assert "mysweep" in capsys.readouterr().err
    run_sweep(Counter(), POINTS, desc="quiet", progress=False)
    assert "quiet" not in capsys.readouterr().err

"""Resumable, shardable sweeps over independent points (grid points, mini-batches, frequencies, checkpoints).

Every finished chunk of points is appended to `out/points.rank<R>.jsonl` (flushed and fsynced) as soon
as it completes, so an interrupted sweep loses nothing finished; a re-run with `resume=True` evaluates
only the missing points. A line cut short by a kill is ignored (that point is recomputed). Under
torch.distributed (started by torchrun; gloo on CPU, NCCL on GPU) rank r takes a disjoint share of the
missing points (every world-th one) and the new results are gathered on every rank, so every rank
returns the full list.

`out/meta.json` describes the sweep (the caller's `meta`, the number of points, a hash of their keys and
the caller's `fingerprint` of weights, data and settings, see `common.fingerprint`); resuming into a
directory written by another sweep raises StaleResultsError (a ValueError) on every rank, naming what
differs. A resume says on stderr (rank 0) how many points it reused. While a sweep writes `out`, it holds
`out/.lock` (a second process into the same folder is refused), and `out` is checked writable first.

Example:
    >>> from fastvit_analysis import run_sweep
    >>> run_sweep(lambda pts: [{"sq": p[0] ** 2} for p in pts], [(1,), (2,), (3,)], progress=False)
    [{'sq': 1}, {'sq': 4}, {'sq': 9}]
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from .common.deprecation import renamed_kwargs
from .common.distributed import all_gather, barrier, broadcast_from_rank0, world_size
from .common.distributed import rank as get_rank
from .common.fingerprint import describe_mismatch
from .common.progress import progress_bar
from .common.results import atomic_write_text, to_jsonable
from .common.store import check_writable, folder_lock

__all__ = ["run_sweep", "check_meta", "load_done", "StaleResultsError"]

PointResult = dict[str, Any]
_FORMAT = "fastvit_analysis.sweep/1"


def _key(point: Any) -> str:
    return json.dumps(to_jsonable(point), sort_keys=True)


def load_done(out: str | os.PathLike) -> dict[str, PointResult]:
    """Finished points found in `out/points.rank*.jsonl`: key -> result. Unparseable lines (a write cut
    by a kill) are skipped."""
    done: dict[str, PointResult] = {}
    for file in sorted(Path(out).glob("points.rank*.jsonl")):
        with open(file, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):
                    continue  # the last line of a file whose write was interrupted
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("key"), str) and "result" in record:
                    done[record["key"]] = record["result"]
    return done


_load_done = load_done  # the name used by the first version of this module


class StaleResultsError(ValueError):
    """`out` holds results computed from other weights, data or settings than this call's.

    `differences` lists what differs in words; `fix(option)` names the way out in the caller's terms
    (the CLI passes "--no-resume")."""

    def __init__(self, out: str | os.PathLike, differences: list[str], option: str = "resume=False"):
        self.out, self.differences = str(out), list(differences)
        super().__init__(self.fix(option))

    def fix(self, option: str) -> str:
        return (f"out={self.out!r} holds results of another sweep (differs in: {'; '.join(self.differences)}); "
                f"rerun with {option} to recompute them, or use another output folder")


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    diffs = describe_mismatch(stored.get("fingerprint"), wanted["fingerprint"]) \
        if "fingerprint" in wanted and stored.get("fingerprint") != wanted["fingerprint"] else []
    if "fingerprint" in wanted and "fingerprint" not in stored:
        diffs = ["fingerprint (written by an older version, which did not record weights and data)"]
    for k in sorted(set(stored) | set(wanted)):
        if k != "fingerprint" and stored.get(k) != wanted.get(k):
            diffs.append(k)
    return diffs


def check_meta(out: Path, meta: dict[str, Any]) -> None:
    """Write `out/meta.json`, or check that an existing one describes the same sweep
    (StaleResultsError naming what differs, if not)."""
    meta_file = Path(out) / "meta.json"
    wanted = to_jsonable(meta)
    if meta_file.exists():
        try:
            stored = json.loads(meta_file.read_text())
        except json.JSONDecodeError:
            raise StaleResultsError(out, ["meta.json (it is not valid JSON)"]) from None
        if stored != wanted:
            raise StaleResultsError(out, _differences(stored if isinstance(stored, dict) else {}, wanted))
    else:
        atomic_write_text(meta_file, json.dumps(wanted, indent=2))


def _prepare_out(out_dir: Path, meta: dict[str, Any], resume: bool) -> None:
    check_writable(out_dir)
    if not resume:
        for f in out_dir.glob("points.rank*.jsonl"):
            f.unlink()
        (out_dir / "meta.json").unlink(missing_ok=True)
    check_meta(out_dir, meta)


def _open_log(path: Path):
    log = open(path, "a", encoding="utf-8")
    # A kill may have left a last line without its newline: start on a fresh line so that the next
    # record is not glued to the broken one.
    if log.tell() > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                log.write("\n")
    return log


@renamed_kwargs(chunk_size="per_pass")
def run_sweep(evaluate: Callable[[list[Any]], list[PointResult]], points: Sequence[Hashable], *,
              out: str | os.PathLike | None = None, resume: bool = True, meta: dict[str, Any] | None = None,
              per_pass: int = 1, desc: str = "sweep", progress: bool = True,
              fingerprint: dict[str, Any] | None = None, wait: bool = False) -> list[PointResult]:
    """Evaluate `points` (JSON-serialisable keys) in chunks and return one result dict per point, in order.

    Args:
        evaluate: maps a list of up to `per_pass` points to a list of result dicts (values: numbers,
            lists, tensors or arrays; they are stored, and returned, as JSON-safe values: NaN/Inf -> None).
        points: the sweep's points, e.g. grid indices `(i, j)`, mini-batch indices, frequencies.
        out: directory for incremental results; None keeps everything in memory.
        resume: reuse the finished points found in `out` (which must describe the same `meta`);
            False clears `out` first.
        meta: describes the sweep (model, grid, data); stored in `out/meta.json` and checked on resume.
        per_pass: points per `evaluate` call; each finished chunk is written at once.
        fingerprint: `common.fingerprint.fingerprint(...)` of the weights, data and settings the results
            depend on; stored with `meta` and compared on resume (StaleResultsError names what differs).
        wait: wait for another process's lock on `out` instead of refusing (FolderBusyError).

    Returns:
        list of result dicts, `results[i]` for `points[i]` (on every rank).

    Under torch.distributed every rank must call run_sweep with the same points and meta. If
    `evaluate` raises on one rank, every rank raises (the failing one re-raises its own exception).
    """
    if not callable(evaluate):
        raise TypeError(f"evaluate: expected a callable, got {type(evaluate).__name__}")
    if not isinstance(per_pass, int) or isinstance(per_pass, bool) or per_pass < 1:
        raise ValueError(f"per_pass must be an int >= 1, got {per_pass!r}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta: expected a dict or None, got {type(meta).__name__}")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint: expected a dict or None, got {type(fingerprint).__name__}")
    with ExitStack() as stack:
        if out is not None and get_rank() == 0:
            stack.enter_context(folder_lock(check_writable(out), wait=wait))
        return _run_sweep(evaluate, points, out=out, resume=resume, meta=meta, per_pass=per_pass,
                          desc=desc, progress=progress, fingerprint=fingerprint)


def _run_sweep(evaluate, points, *, out, resume, meta, per_pass, desc, progress, fingerprint):
    rank, world = get_rank(), world_size()
    points = list(points)
    keys = _unique_keys(points)
    done: dict[str, PointResult] = {}
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _prepare_on_rank0(out_dir, _sweep_meta(keys, meta, fingerprint), resume, rank)
        done = _finished_points(out_dir, keys, resume, rank, desc)
    todo = [i for i, k in enumerate(keys) if k not in done]
    new, failure = _evaluate_share(evaluate, points, keys, todo, rank=rank, world=world, per_pass=per_pass,
                                   out_dir=out_dir, desc=desc, progress=progress)
    done.update(_gather_results(new, failure, world))
    return [done[k] for k in keys]


def _unique_keys(points: list[Any]) -> list[str]:
    keys = [_key(p) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError("points must be unique")
    return keys


def _sweep_meta(keys: list[str], meta: dict[str, Any] | None, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    """What `out/meta.json` records: the format, the points (count and hash), the caller's meta and fingerprint."""
    full_meta = {"format": _FORMAT, "points": len(keys),
                 "points_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(), **(meta or {})}
    if fingerprint is not None:
        full_meta["fingerprint"] = fingerprint
    return full_meta


def _prepare_on_rank0(out_dir: Path, full_meta: dict[str, Any], resume: bool, rank: int) -> None:
    """Rank 0 clears (no resume) and checks `out_dir`; every rank raises if that failed."""
    error = None
    if rank == 0:
        try:
            _prepare_out(out_dir, full_meta, resume)
        except (ValueError, OSError) as e:
            error = e
    # Every rank learns whether rank 0's check passed, so no rank is left waiting in a collective.
    error_text = broadcast_from_rank0(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if error_text is not None:
        raise ValueError(f"rank 0 could not prepare out={str(out_dir)!r}: {error_text}")


def _finished_points(out_dir: Path, keys: list[str], resume: bool, rank: int, desc: str) -> dict[str, PointResult]:
    """The results already in `out_dir` (none without resume), read by every rank before any writes."""
    done = load_done(out_dir) if resume else {}
    reused = sum(k in done for k in keys)
    if rank == 0 and reused:
        print(f"{desc}: {reused}/{len(keys)} points reused from {out_dir}, computing {len(keys) - reused}",
              file=sys.stderr, flush=True)
    # Nobody writes before every rank has read, so all ranks agree on what is missing.
    barrier()
    return done


def _evaluate_chunk(evaluate, points: list[Any], keys: list[str], idx: list[int]) -> dict[str, PointResult]:
    """`evaluate` on the points `idx`: key -> JSON-safe result, in the order of `idx`."""
    results = evaluate([points[i] for i in idx])
    if not isinstance(results, (list, tuple)) or len(results) != len(idx):
        n = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
        raise ValueError(f"evaluate returned {n} results for {len(idx)} points; expected a list "
                         f"with one dict per point")
    return {keys[i]: to_jsonable(res) for i, res in zip(idx, results)}


def _append_durably(log, chunk: dict[str, PointResult]) -> None:
    log.write("".join(json.dumps({"key": key, "result": res}) + "\n" for key, res in chunk.items()))
    log.flush()
    os.fsync(log.fileno())


def _evaluate_share(evaluate, points: list[Any], keys: list[str], todo: list[int], *, rank: int, world: int,
                    per_pass: int, out_dir: Path | None, desc: str, progress: bool):
    """This rank's share of `todo` (every world-th point), in chunks, each written to its log as it finishes.

    Returns (new results by key, the exception that stopped it or None): the caller tells the other ranks
    before raising it."""
    mine = todo[rank::world]
    new: dict[str, PointResult] = {}
    failure: BaseException | None = None
    log = _open_log(out_dir / f"points.rank{rank}.jsonl") if out_dir is not None else None
    bar = progress_bar(total=len(todo), desc=desc, progress=progress, unit="pt")
    try:
        for start in range(0, len(mine), per_pass):
            idx = mine[start:start + per_pass]
            chunk = _evaluate_chunk(evaluate, points, keys, idx)
            new.update(chunk)
            if log is not None:
                _append_durably(log, chunk)
            bar.update(min(len(idx) * world, len(todo) - bar.n))
    except BaseException as e:  # noqa: BLE001 - re-raised by _gather_results, after telling the other ranks
        failure = e
    finally:
        bar.close()
        if log is not None:
            log.close()
    return new, failure


def _gather_results(new: dict[str, PointResult], failure: BaseException | None,
                    world: int) -> dict[str, PointResult]:
    """Every rank's new results on every rank; a failure on any rank raises on all of them."""
    if world > 1:
        parts = all_gather((None, f"{type(failure).__name__}: {failure}") if failure is not None
                           else (new, None))
        if failure is not None:
            raise failure
        errors = [(r, err) for r, (_, err) in enumerate(parts) if err is not None]
        if errors:
            raise RuntimeError(f"sweep failed on rank {errors[0][0]}: {errors[0][1]}")
        for part, _ in parts:
            new.update(part)
    elif failure is not None:
        raise failure
    return new

"""Resumable, shardable sweeps over independent points (grid points, mini-batches, frequencies, checkpoints).

Every finished point is appended to `out/points.rank<R>.jsonl` (flushed and fsynced) as soon as it
completes, so an interrupted sweep loses nothing finished; a re-run with `resume=True` evaluates only
the missing points. Under torch.distributed (started by torchrun) rank r takes a disjoint share of the
missing points and the results are gathered on every rank.

Example:
    >>> from fastvit_analysis import run_sweep
    >>> run_sweep(lambda pts: [{"sq": p[0] ** 2} for p in pts], [(1,), (2,), (3,)], progress=False)
    [{'sq': 1}, {'sq': 4}, {'sq': 9}]
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from ._progress import progress_bar
from ._results import atomic_write_text, to_jsonable

PointResult = dict[str, Any]


def _key(point: Any) -> str:
    return json.dumps(to_jsonable(point), sort_keys=True)


def _dist_info() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # pragma: no cover
        pass
    return 0, 1


def _load_done(out: Path) -> dict[str, PointResult]:
    done: dict[str, PointResult] = {}
    for file in sorted(out.glob("points.rank*.jsonl")):
        with open(file) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: that point is recomputed
                    continue
                done[record["key"]] = record["result"]
    return done


def check_meta(out: Path, meta: dict[str, Any]) -> None:
    """Write `out/meta.json`, or check that an existing one describes the same sweep."""
    meta_file = out / "meta.json"
    wanted = to_jsonable(meta)
    if meta_file.exists():
        stored = json.loads(meta_file.read_text())
        if stored != wanted:
            diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ValueError(f"out={str(out)!r} holds results of another sweep (differs in {diff}); "
                             f"use another directory or resume=False")
    else:
        atomic_write_text(meta_file, json.dumps(wanted, indent=2))


def run_sweep(evaluate: Callable[[list[Any]], list[PointResult]], points: Sequence[Hashable], *,
              out: str | os.PathLike | None = None, resume: bool = True, meta: dict[str, Any] | None = None,
              chunk_size: int = 1, desc: str = "sweep", progress: bool = True) -> list[PointResult]:
    """Evaluate `points` (JSON-serialisable keys) in chunks and return one result dict per point, in order.

    Args:
        evaluate: maps a list of up to `chunk_size` points to a list of result dicts (values: numbers,
            lists, tensors or arrays; they are stored as JSON).
        points: the sweep's points, e.g. grid indices `(i, j)`, mini-batch indices, frequencies.
        out: directory for incremental results; None keeps everything in memory.
        resume: reuse the finished points found in `out` (which must describe the same `meta`).
        meta: describes the sweep (model, grid, data); stored in `out/meta.json` and checked on resume.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rank, world = _dist_info()
    keys = [_key(p) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError("points must be unique")
    out_dir = Path(out) if out is not None else None
    done: dict[str, PointResult] = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume and rank == 0:
            for f in out_dir.glob("points.rank*.jsonl"):
                f.unlink()
            (out_dir / "meta.json").unlink(missing_ok=True)
        _barrier()
        if rank == 0:
            check_meta(out_dir, {"points": len(keys), **(meta or {})})
        _barrier()
        done = _load_done(out_dir) if resume else {}
        if rank != 0:
            check_meta(out_dir, {"points": len(keys), **(meta or {})})

    todo = [i for i, k in enumerate(keys) if k not in done]
    mine = todo[rank::world]
    log = open(out_dir / f"points.rank{rank}.jsonl", "a") if out_dir is not None else None
    try:
        bar = progress_bar(total=len(todo), desc=desc, progress=progress, unit="pt")
        for start in range(0, len(mine), chunk_size):
            idx = mine[start:start + chunk_size]
            results = evaluate([points[i] for i in idx])
            if len(results) != len(idx):
                raise ValueError(f"evaluate returned {len(results)} results for {len(idx)} points")
            for i, res in zip(idx, results):
                res = to_jsonable(res)
                done[keys[i]] = res
                if log is not None:
                    log.write(json.dumps({"key": keys[i], "result": res}) + "\n")
            if log is not None:
                log.flush()
                os.fsync(log.fileno())
            bar.update(len(idx) * world)
        bar.close()
    finally:
        if log is not None:
            log.close()

    if world > 1:
        done = _gather_results(done)
    return [done[k] for k in keys]


def _barrier() -> None:
    rank, world = _dist_info()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _gather_results(local: dict[str, PointResult]) -> dict[str, PointResult]:
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    merged: dict[str, PointResult] = {}
    for part in gathered:
        merged.update(part)
    return merged

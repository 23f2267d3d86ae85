"""Output folders: checked writable before any computation, and held by one process at a time.

`check_writable(folder)` creates the folder and writes + removes a probe file, so a read-only or full
disk is reported before hours of work instead of after. `folder_lock(folder)` takes an advisory
`fcntl.flock` on `folder/.lock` for as long as a run writes there; a second process into the same
folder refuses at once with a clear message (or waits with `wait=True`). Locks are re-entrant within
one process (the CLI holds OUT while a sweep inside it writes OUT/…_points).

Example:
    >>> import tempfile
    >>> from fastvit_analysis.common.store import check_writable, folder_lock
    >>> d = tempfile.mkdtemp()
    >>> check_writable(d).is_dir()
    True
    >>> with folder_lock(d):
    ...     pass
"""
from __future__ import annotations

import errno
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["OutputFolderError", "FolderBusyError", "check_writable", "folder_lock"]

LOCK_NAME = ".lock"


class OutputFolderError(OSError):
    """The output folder cannot be created or written (read-only, full disk, not a directory...)."""


class FolderBusyError(RuntimeError):
    """Another process holds the output folder's lock."""


def check_writable(folder: str | os.PathLike, *, name: str = "out") -> Path:
    """Create `folder` if needed and prove it writable with a probe file; OutputFolderError otherwise."""
    path = Path(folder).expanduser()
    try:
        if path.exists() and not path.is_dir():
            raise OutputFolderError(errno.ENOTDIR, f"{name}={str(path)!r} exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe.", suffix=".tmp")
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OutputFolderError:
        raise
    except OSError as e:
        reason = e.strerror or str(e)
        raise OutputFolderError(e.errno or errno.EIO,
                                f"{name}={str(path)!r} is not writable ({reason}); choose another folder") from None
    return path


_held: dict[str, list] = {}  # folder -> [file object, depth]; re-entrant within this process
_held_guard = threading.Lock()


@contextmanager
def folder_lock(folder: str | os.PathLike, *, wait: bool = False, name: str = "out") -> Iterator[Path]:
    """Hold the advisory lock `folder/.lock` (created if missing) for the duration of the block.

    Raises FolderBusyError when another process holds it and `wait` is False.
    """
    import fcntl

    path = Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        f = open(path / LOCK_NAME, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            raise FolderBusyError(f"{name}={str(path)!r} is in use by another running process (lock "
                                  f"{LOCK_NAME}); wait for it, use another folder, or wait for the lock "
                                  f"(--wait / wait=True)") from None
        except BaseException:
            f.close()
            raise
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        entry = [f, 1]
        with _held_guard:
            _held[key] = entry
    try:
        yield path
    finally:
        with _held_guard:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[key]
        if last:
            fcntl.flock(entry[0].fileno(), fcntl.LOCK_UN)
            entry[0].close()

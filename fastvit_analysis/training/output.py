"""The output folder of a training run: one writer at a time (an advisory lock), checked writable before
any work, and files replaced atomically under unique temporary names with the umask's mode.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with OutputFolder(folder) as out:
    ...     _ = out.write_text("metrics.jsonl", "{}\\n")
    >>> open(folder + "/metrics.jsonl").read()
    '{}\\n'
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

__all__ = ["OutputFolder", "FolderBusyError", "atomic_write", "umask_mode"]

LOCK_NAME = ".lock"


class FolderBusyError(RuntimeError):
    """Another process holds the output folder's lock."""


def umask_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file: 0o666 without the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Write `path` through `write(file)` into a uniquely named temporary file in the same folder, then
    rename it over `path`: readers never see half a file and two writers never share a temporary name."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class OutputFolder:
    """An output folder held by one process: `OUT/.lock` is flock'ed (exclusive, non-blocking) on entry.

    Entering creates the folder, takes the lock (FolderBusyError when another process holds it) and
    checks that a file can be created there (OSError naming the folder otherwise).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __enter__(self) -> "OutputFolder":
        import fcntl

        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"out {str(self.path)!r} exists and is not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, umask_mode())
        except OSError as exc:
            raise OSError(exc.errno, f"out {str(self.path)!r} is not writable: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusyError(f"out {str(self.path)!r} is in use by another process (it holds "
                                  f"{str(self.path / LOCK_NAME)!r}); wait for it to finish or use another "
                                  f"output folder") from None
        self._lock_fd = fd
        try:
            self.check_writable()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def check_writable(self) -> None:
        """Create and remove a probe file, so a read-only or full folder fails before any training."""
        try:
            atomic_write(self.path / ".write-probe", lambda f: f.write(b"ok"))
            os.unlink(self.path / ".write-probe")
        except OSError as exc:
            raise OSError(exc.errno, f"out {str(self.path)!r} is not writable: {exc.strerror or exc}") from None

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write(self.path / name, lambda f: f.write(text.encode()))

    def save_torch(self, name: str, obj: Any) -> Path:
        import torch

        return atomic_write(self.path / name, lambda f: torch.save(obj, f))

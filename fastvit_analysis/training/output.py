"""The output folder of a training run: one writer at a time (the shared advisory lock of
common/store.py), checked writable before any work, and files replaced atomically under unique
temporary names with the umask's mode (common/jsonio.py).

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with OutputFolder(folder) as out:
    ...     _ = out.write_text("metrics.jsonl", "{}\\n")
    >>> open(folder + "/metrics.jsonl").read()
    '{}\\n'
"""
from __future__ import annotations

import io
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..common.jsonio import atomic_write_bytes
from ..common.store import FolderBusyError, check_writable, folder_lock

__all__ = ["OutputFolder", "FolderBusyError"]


class OutputFolder:
    """An output folder held by this process: entering takes `OUT/.lock` (FolderBusyError when another
    process holds it; re-entrant, so a CLI that already holds OUT can train into it) and checks that a
    file can be created there (OutputFolderError, an OSError naming the folder, otherwise)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._stack: ExitStack | None = None

    def __enter__(self) -> "OutputFolder":
        stack = ExitStack()
        try:
            check_writable(self.path)
            stack.enter_context(folder_lock(self.path))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_bytes(self.path / name, text)
        return self.path / name

    def save_torch(self, name: str, obj: Any) -> Path:
        import torch

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        atomic_write_bytes(self.path / name, buffer.getvalue())
        return self.path / name

"""Files every result goes through, without importing torch (the report reads them too).

Writes are atomic (a uniquely named temporary file in the target folder, fsync, rename), so readers
never see half a file and two writers never share a temporary name; new files get the mode the umask
allows (0o666 & ~umask), as `open()` would give, not mkstemp's 0o600.

Example:
    >>> import tempfile, os
    >>> from fastvit_analysis.common.jsonio import atomic_write_text, read_json
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> atomic_write_text(path, '{"a": null}'); read_json(path)
    {'a': None}
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["default_file_mode", "unique_temp_path", "atomic_write_bytes", "atomic_write_text", "read_json"]


def default_file_mode() -> int:
    """0o666 & ~umask: the mode `open()` would give a new file (mkstemp gives 0o600)."""
    try:  # Linux: read the umask without changing it (os.umask is process-wide, racy with threads)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def unique_temp_path(path: str | os.PathLike) -> tuple[int, str]:
    """(fd, name) of a new, uniquely named temporary file next to `path` (for write + os.replace)."""
    path = Path(path)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` via a unique temporary file + rename, so readers never see half a file
    and two writers never share a temporary file; the file gets the umask's mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = unique_temp_path(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fchmod(f.fileno(), default_file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically; see `atomic_write_bytes`."""
    atomic_write_bytes(path, text)


def read_json(path: str | os.PathLike) -> Any:
    """The parsed JSON of `path`; OSError / ValueError (json.JSONDecodeError) propagate to the caller,
    which decides whether an unreadable file is an error or a line in a list of skipped files."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)

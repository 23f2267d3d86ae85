"""The CLI's error type and its one-line error printer (imports nothing of the package, so every CLI
module can use them without an import circle).

Example:
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     print_error(CLIError("--steps: expected at least 2 grid steps,\\n got '1'"))
    >>> err.getvalue()
    "fastvit-analysis: error: --steps: expected at least 2 grid steps, got '1'\\n"
"""
from __future__ import annotations

import sys

__all__ = ["PROG", "CLIError", "print_error"]

PROG = "fastvit-analysis"


class CLIError(Exception):
    """An error in the user's arguments: printed as one line, exit status 2."""


def print_error(message: object) -> None:
    """Print `message` on stderr as the single line `fastvit-analysis: error: ...` (at most 400 characters)."""
    text = " ".join(str(message).split()) or "unknown error"
    if len(text) > 400:
        text = text[:397] + "..."
    print(f"{PROG}: error: {text}", file=sys.stderr)

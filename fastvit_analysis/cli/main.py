"""The top-level error handler and dispatch of the `fastvit-analysis` command.

The parser lives in parser.py and CLIError in errors.py (both re-exported here); this module only
parses, dispatches to the subcommand and turns errors into one line. Only argparse is imported at
import time, so `--help` and argument errors answer without loading torch; each subcommand's
implementation is imported when it runs.

Example (the paper preset of `reproduce` needs --data: one line on stderr, exit status 2):
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     status = main(["reproduce"])
    >>> status, err.getvalue().startswith("fastvit-analysis: error: --data: the paper preset needs the real data")
    (2, True)
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import PROG, CLIError, print_error
from .parser import (
    DATA_HELP,
    MODEL_HELP,
    build_parser,
    cka_batch,
    frequency,
    nonnegative_float,
    positive_float,
    positive_int,
    steps_type,
)

__all__ = ["main", "build_parser", "CLIError", "PROG", "DATA_HELP", "MODEL_HELP", "positive_int",
           "nonnegative_float", "positive_float", "frequency", "steps_type", "cka_batch"]

_print_error = print_error  # the name before errors.py existed


def _run_selfcheck(args: argparse.Namespace) -> int:
    from ..selfcheck import selfcheck

    result = selfcheck(triton=not args.no_triton, json_path=args.json, bench=args.bench)
    print(result.table())
    return 0 if result.ok else 1


# ----------------------------------------------------------------------------------------- main
def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    if name == "report":
        from .report import run_report

        return run_report
    if name == "demo":
        from .demo import run_demo

        return _in_cli_terms(run_demo)
    if name == "selfcheck":
        return _run_selfcheck
    if name == "reproduce":
        from .reproduce import run_reproduce

        return _in_cli_terms(run_reproduce)
    from . import commands

    return _in_cli_terms(getattr(commands, f"run_{name}"))


def _in_cli_terms(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Library errors named in the CLI's options (--no-resume, --wait); output-folder locks released
    when the command ends."""
    def wrapped(args: argparse.Namespace) -> int:
        from ._common import cli_errors, release_locks

        try:
            with cli_errors():
                return run(args)
        finally:
            release_locks()

    return wrapped


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fastvit-analysis` and `python -m fastvit_analysis`; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(_handler(args.run)(args) or 0)
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except (CLIError, ValueError, TypeError, OSError, KeyError, RuntimeError, ImportError) as exc:
        if args.debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in str(message):
            message = f"{message}: {exc.filename}"
        print_error(message)
        return 2 if isinstance(exc, CLIError) else 1
    finally:
        _shutdown_distributed()


def _shutdown_distributed() -> None:
    if "torch" not in sys.modules:
        return
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

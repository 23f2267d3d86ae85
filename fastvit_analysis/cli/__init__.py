"""The `fastvit-analysis` command: subcommands train, hessian, landscape, fourier, variance, cka,
robustness, report and demo (see `fastvit-analysis --help` and docs/cli.md).

Example (a report of an empty results folder):
    >>> import tempfile
    >>> from fastvit_analysis.cli import main
    >>> main(["report", "--out", tempfile.mkdtemp()])  # doctest: +ELLIPSIS
    report: 0 result files -> .../report.html
    0
"""
from .main import build_parser, main

__all__ = ["build_parser", "main"]

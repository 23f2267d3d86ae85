"""The `fastvit-analysis` command: subcommands train, hessian, landscape, fourier, variance, cka,
robustness, report and demo (see `fastvit-analysis --help` and docs/cli.md).

Example:
    >>> from fastvit_analysis.cli import main
    >>> main(["report", "--out", "fastvit-demo"])  # doctest: +SKIP
    0
"""
from .main import build_parser, main

__all__ = ["build_parser", "main"]

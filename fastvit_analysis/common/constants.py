"""Numbers more than one module needs, defined once (torch-free).

Example:
    >>> from fastvit_analysis.common.constants import CIFAR10_MEAN, LOG_EPS
    >>> CIFAR10_MEAN, LOG_EPS
    ((0.4914, 0.4822, 0.4465), 1e-06)
"""
from __future__ import annotations

__all__ = ["LOG_EPS", "CIFAR10_MEAN", "CIFAR10_STD"]

LOG_EPS = 1e-6  # the paper's log(|F| + 1e-6) in the relative log amplitude
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel statistics of the CIFAR-10 training images
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

"""Data: CIFAR-10/100 and ImageFolder from disk, CIFAR-C corruptions, the embedded synthetic data set.

Example:
    >>> from fastvit_analysis.data import build_dataset
    >>> ds = build_dataset("synthetic", "test", num_samples=50)
    >>> len(ds), ds[0][0].shape
    (50, torch.Size([3, 32, 32]))
"""
from .corruptions import CIFAR_C_CORRUPTIONS, CorruptedCIFAR, available_corruptions
from .datasets import (
                       CIFAR10_MEAN,
                       CIFAR10_STD,
                       CIFAR100_MEAN,
                       CIFAR100_STD,
                       DATASET_KINDS,
                       IMAGENET_MEAN,
                       IMAGENET_STD,
                       DataSpec,
                       build_dataset,
                       build_loader,
                       build_transform,
                       normalization,
                       parse_spec,
)
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_MEAN, SYNTHETIC_SPLITS, SYNTHETIC_STD, SyntheticShapes

__all__ = ["build_dataset", "build_loader", "build_transform", "normalization", "parse_spec", "DataSpec",
           "SyntheticShapes", "CorruptedCIFAR", "available_corruptions", "CIFAR_C_CORRUPTIONS",
           "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "IMAGENET_MEAN", "IMAGENET_STD",
           "SYNTHETIC_MEAN", "SYNTHETIC_STD", "SYNTHETIC_CLASSES", "SYNTHETIC_SPLITS", "DATASET_KINDS"]

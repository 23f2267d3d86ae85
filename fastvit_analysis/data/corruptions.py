"""CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich, 2019) read from disk.

Layout of the published archives: one folder holding `<corruption>.npy` (50 000 × 32 × 32 × 3 uint8: the
10 000 test images at severity 1, then severity 2, ... 5) and `labels.npy` (50 000 labels).

Example (a CIFAR-10-C folder of 2 images per severity, made on the spot):
    >>> import tempfile, numpy as np
    >>> from fastvit_analysis.data import build_dataset
    >>> root = tempfile.mkdtemp()
    >>> np.save(f"{root}/fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    >>> np.save(f"{root}/labels.npy", np.arange(10) % 3)
    >>> ds = build_dataset(f"cifar10c:{root}", "test", corruption="fog", severity=3)
    >>> len(ds), ds.targets
    (2, [1, 2])
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["CIFAR_C_CORRUPTIONS", "CorruptedCIFAR", "available_corruptions"]

# The 15 benchmark corruptions (the archives also ship 4 extra ones, accepted when present).
CIFAR_C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)


def available_corruptions(path: str | Path) -> list[str]:
    """Corruption names with a .npy file in the CIFAR-C folder `path`."""
    return sorted(p.stem for p in Path(path).glob("*.npy") if p.stem != "labels")


class CorruptedCIFAR(Dataset):
    """One corruption at one severity of CIFAR-10-C / CIFAR-100-C; items (transform(PIL image), label).

    The arrays are memory-mapped, so only the 10 000 images of the chosen severity are read.
    """

    def __init__(self, path: str | Path, corruption: str, severity: int, *,
                 transform: Callable | None = None) -> None:
        path = Path(path)
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
        if not path.is_dir():
            raise FileNotFoundError(f"CIFAR-C folder {str(path)!r} does not exist")
        file = path / f"{corruption}.npy"
        if not file.is_file():
            found = available_corruptions(path)
            raise ValueError(f"corruption {corruption!r} not found in {str(path)!r} "
                             f"(available: {', '.join(found) or 'none'})")
        labels_file = path / "labels.npy"
        if not labels_file.is_file():
            raise FileNotFoundError(f"CIFAR-C folder {str(path)!r} has no labels.npy")
        images = np.load(file, mmap_mode="r")
        labels = np.load(labels_file, mmap_mode="r")
        if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or len(images) % len(SEVERITIES):
            raise ValueError(f"{str(file)!r}: expected (5·N, 32, 32, 3) images, got shape {images.shape}")
        per_severity = len(images) // len(SEVERITIES)
        rows = slice((severity - 1) * per_severity, severity * per_severity)
        self.data = images[rows]
        self.targets = [int(t) for t in np.asarray(labels[rows])]
        self.corruption, self.severity, self.transform = corruption, severity, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(np.ascontiguousarray(self.data[index]))
        return (self.transform(image) if self.transform is not None else image), self.targets[index]

"""Data specs -> datasets and loaders: "synthetic" (or "synthetic:SIZE"), "cifar10:/path", "cifar100:/path",
"imagefolder:/path", "cifar10c:/path", "cifar100c:/path". Nothing is ever downloaded.

Example:
    >>> from fastvit_analysis.data import build_loader
    >>> x, y = next(iter(build_loader("synthetic", "test", batch_size=8, num_samples=20)))
    >>> x.shape, y.shape
    (torch.Size([8, 3, 32, 32]), torch.Size([8]))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T

from .corruptions import CIFAR_C_CORRUPTIONS, CorruptedCIFAR
from .synthetic import MIN_IMAGE_SIZE, SYNTHETIC_MEAN, SYNTHETIC_SPLITS, SYNTHETIC_STD, SyntheticShapes

__all__ = ["DataSpec", "parse_spec", "build_dataset", "build_loader", "build_transform", "normalization",
           "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "IMAGENET_MEAN", "IMAGENET_STD",
           "DATASET_KINDS"]

from ..common.constants import CIFAR10_MEAN, CIFAR10_STD  # noqa: E402

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

DATASET_KINDS = ("synthetic", "cifar10", "cifar100", "imagefolder", "cifar10c", "cifar100c")
_NUM_CLASSES = {"synthetic": 10, "cifar10": 10, "cifar100": 100, "cifar10c": 10, "cifar100c": 100}
_STATS = {"synthetic": (SYNTHETIC_MEAN, SYNTHETIC_STD), "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
          "cifar100": (CIFAR100_MEAN, CIFAR100_STD), "cifar10c": (CIFAR10_MEAN, CIFAR10_STD),
          "cifar100c": (CIFAR100_MEAN, CIFAR100_STD), "imagefolder": (IMAGENET_MEAN, IMAGENET_STD)}
_SPLITS = ("train", "test")
_SPEC_HELP = ("expected 'synthetic' (or 'synthetic:SIZE'), 'cifar10:/path', 'cifar100:/path', 'imagefolder:/path', "
              "'cifar10c:/path' or 'cifar100c:/path'")


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: `kind` in DATASET_KINDS and `path` (None for synthetic); `size` is the image side
    of "synthetic:SIZE" (None: the default 32)."""

    kind: str
    path: Path | None
    text: str
    size: int | None = None

    @property
    def num_classes(self) -> int | None:
        return _NUM_CLASSES.get(self.kind)

    @property
    def image_size(self) -> int:
        if self.size is not None:
            return self.size
        return 224 if self.kind == "imagefolder" else 32


def parse_spec(spec: str) -> DataSpec:
    """Parse "kind[:path]" ("synthetic[:SIZE]"); raises ValueError for an unknown kind, a missing path part
    or a synthetic image side that is not an int >= 16."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"data spec must be a non-empty string, {_SPEC_HELP}; got {spec!r}")
    kind, sep, path = spec.strip().partition(":")
    kind = kind.lower()
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown data spec {spec!r}: {_SPEC_HELP}")
    if kind == "synthetic":
        if not path:
            return DataSpec(kind, None, spec)
        if not path.strip().isdigit() or int(path) < MIN_IMAGE_SIZE:
            raise ValueError(f"data spec {spec!r}: 'synthetic:SIZE' takes an image side >= {MIN_IMAGE_SIZE} "
                             f"(e.g. 'synthetic:24'), not a path")
        return DataSpec(kind, None, spec, int(path))
    if not path:
        raise ValueError(f"data spec {spec!r}: {kind} needs a local path, e.g. '{kind}:/data/{kind}'")
    return DataSpec(kind, Path(path).expanduser(), spec)


def normalization(spec: str | DataSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel used to normalise the inputs of a data spec."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    return _STATS[parsed.kind]


def build_transform(spec: str | DataSpec, *, train: bool = False, randaugment: str | None = None,
                    crop: bool = True, flip: bool = True, img_size: int | None = None) -> Callable:
    """PIL image -> normalised (3, H, W) tensor. With train=True: random crop (32×32: pad 4; ImageFolder:
    random-resized crop; other sides: pad size/8) + horizontal flip + optional timm RandAugment (e.g.
    "rand-m9-n2")."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    mean, std = _STATS[parsed.kind]
    size = img_size or parsed.image_size
    ops: list[Callable] = []
    if parsed.kind == "imagefolder":
        if train:
            ops.append(T.RandomResizedCrop(size) if crop else T.Resize((size, size)))
        else:
            ops += [T.Resize(int(round(size / 0.875))), T.CenterCrop(size)]
    elif train and crop:
        ops.append(T.RandomCrop(size, padding=max(1, size // 8)))
    if train and flip:
        ops.append(T.RandomHorizontalFlip())
    if train and randaugment:
        from timm.data.auto_augment import rand_augment_transform

        hparams = dict(translate_const=int(size * 0.45), img_mean=tuple(round(255 * m) for m in mean))
        try:
            ops.append(rand_augment_transform(randaugment, hparams))
        except Exception as exc:
            raise ValueError(f"randaugment: invalid timm RandAugment config {randaugment!r} "
                             f"(expected e.g. 'rand-m9-n2'): {exc}") from None
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def _cifar_root(path: Path, folder: str) -> Path:
    """torchvision wants the folder that contains `cifar-10-batches-py`; accept that folder itself too."""
    if (path / folder).is_dir():
        return path
    if path.name == folder and path.is_dir():
        return path.parent
    raise FileNotFoundError(f"no CIFAR data at {str(path)!r}: expected the folder {folder!r} inside it "
                            f"(the python version of the data set; fastvit_analysis never downloads)")


def _image_folder_root(path: Path, split: str) -> Path:
    candidates = [path / "train"] if split == "train" else [path / "val", path / "test"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return path


def build_dataset(spec: str, split: str = "train", *, transform: Callable | None = None,
                  num_samples: int | None = None, seed: int = 0, corruption: str | None = None,
                  severity: int | None = None) -> Dataset:
    """Dataset for a data spec; items are (image tensor (3, H, W), int label).

    Args:
        spec: "synthetic" ("synthetic:SIZE": SIZE×SIZE images), "cifar10:/path", "cifar100:/path",
            "imagefolder:/path" (uses path/train and path/val or path/test when present, else path),
            "cifar10c:/path", "cifar100c:/path" (CIFAR-C folder of <corruption>.npy + labels.npy; needs
            `corruption` and `severity`).
        split: "train" or "test" (CIFAR-C has only "test").
        transform: PIL image -> tensor; None = the evaluation transform (normalisation only for 32×32 data).
        num_samples: keep this many samples (synthetic: generate this many; others: a seeded random subset).
        seed: seed of the synthetic images and of the subset.
        corruption, severity: CIFAR-C corruption name (CIFAR_C_CORRUPTIONS) and severity 1..5.

    Raises:
        ValueError: bad spec, split, num_samples or corruption; FileNotFoundError: missing data on disk.
    """
    parsed = parse_spec(spec)
    if split not in (SYNTHETIC_SPLITS if parsed.kind == "synthetic" else _SPLITS):
        raise ValueError(f"split must be one of {SYNTHETIC_SPLITS if parsed.kind == 'synthetic' else _SPLITS}, "
                         f"got {split!r}")
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
        raise ValueError(f"num_samples must be a positive int or None, got {num_samples!r}")
    if parsed.kind == "synthetic":
        return SyntheticShapes(split, num_samples=num_samples, seed=seed, transform=transform,
                               **({"size": parsed.size} if parsed.size else {}))
    if parsed.kind in ("cifar10c", "cifar100c") and split != "test":
        raise ValueError(f"data spec {spec!r}: CIFAR-C has only a 'test' split, got split={split!r}")
    if parsed.kind not in ("cifar10c", "cifar100c") and (corruption is not None or severity is not None):
        raise ValueError(f"corruption/severity apply only to 'cifar10c:' or 'cifar100c:' specs, not {spec!r}")
    assert parsed.path is not None
    if not parsed.path.exists():
        raise FileNotFoundError(f"data spec {spec!r}: path {str(parsed.path)!r} does not exist "
                                f"(fastvit_analysis never downloads data)")
    transform = transform if transform is not None else build_transform(parsed)
    if parsed.kind in ("cifar10", "cifar100"):
        from torchvision.datasets import CIFAR10, CIFAR100

        cls, folder = (CIFAR10, "cifar-10-batches-py") if parsed.kind == "cifar10" else (CIFAR100, "cifar-100-python")
        try:
            dataset: Dataset = cls(str(_cifar_root(parsed.path, folder)), train=split == "train",
                                   transform=transform, download=False)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
            raise FileNotFoundError(f"data spec {spec!r}: {exc}") from None
    elif parsed.kind == "imagefolder":
        from torchvision.datasets import ImageFolder

        try:
            dataset = ImageFolder(str(_image_folder_root(parsed.path, split)), transform=transform)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"data spec {spec!r}: {exc}") from None
    else:
        if corruption is None or severity is None:
            raise ValueError(f"data spec {spec!r} needs corruption= (one of {', '.join(CIFAR_C_CORRUPTIONS)}) "
                             f"and severity= (1..5)")
        dataset = CorruptedCIFAR(parsed.path, corruption, severity, transform=transform)
    if num_samples is not None and num_samples < len(dataset):
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(dataset), generator=generator)[:num_samples].sort().values
        dataset = Subset(dataset, keep.tolist())
    return dataset


def build_loader(spec: str, split: str = "train", batch_size: int = 128, *, train: bool = False,
                 num_workers: int = 0, num_samples: int | None = None, seed: int = 0,
                 randaugment: str | None = None, drop_last: bool = False, **dataset_kwargs) -> DataLoader:
    """DataLoader of (inputs (B, 3, H, W), labels (B,)) for a data spec.

    train=True shuffles (seeded) and applies the training augmentation (random crop + flip, plus
    `randaugment` when given); train=False keeps the order and uses the evaluation transform.
    Extra keyword arguments (corruption, severity) go to `build_dataset`.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    parsed = parse_spec(spec)
    transform = build_transform(parsed, train=True, randaugment=randaugment) if train else None
    dataset = build_dataset(spec, split, transform=transform, num_samples=num_samples, seed=seed,
                            **dataset_kwargs)
    generator = torch.Generator().manual_seed(seed) if train else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, num_workers=num_workers,
                      generator=generator, drop_last=drop_last, persistent_workers=False)

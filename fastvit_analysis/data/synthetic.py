"""The embedded data set: 10 classes of RGB images (32×32 by default, any side >= 16), generated in memory
from a seed.

Each class is carried by two cues, as in natural images (docs/data.md):
- shape (low frequency): the silhouette and layout of a soft-edged shape, jittered in position, size,
  rotation and colour;
- texture (high frequency): a sinusoidal grating of period 2.3-2.8 px (0.7π-0.87π rad/px) whose
  ORIENTATION is the class's own (class k: k·18°, ±3° jitter), with random phase and strength, plus pixel
  noise.
A model can classify from either cue. The "conflict" split puts the shape of one class on the texture of
another (every ordered pair of distinct classes equally often), so the share of decisions that follow the
shape measures a model's shape-vs-texture bias (Geirhos et al. 2019), and high-frequency noise destroys
exactly the texture cue (the paper's robustness contrast).

Example:
    >>> from fastvit_analysis.data.synthetic import SyntheticShapes
    >>> ds = SyntheticShapes("train", num_samples=100, seed=0)
    >>> x, y = ds[0]
    >>> x.shape, ds.classes[y] in ds.classes
    (torch.Size([3, 32, 32]), True)
    >>> conflict = SyntheticShapes("conflict", num_samples=90)
    >>> bool((conflict.shape_targets != conflict.texture_targets).all())
    True
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["SyntheticShapes", "SYNTHETIC_CLASSES", "SYNTHETIC_MEAN", "SYNTHETIC_STD", "SYNTHETIC_SIZES",
           "SYNTHETIC_SPLITS", "conflict_pairs", "render_shapes"]

SYNTHETIC_CLASSES = ("disk", "ring", "square", "frame", "triangle", "horizontal_bar", "vertical_bar",
                     "cross", "blob_pair_horizontal", "blob_pair_vertical")
# Channel statistics of the generated images (measured on 20 000 training images, seed 0: 0.358, 0.187).
SYNTHETIC_MEAN = (0.36, 0.36, 0.36)
SYNTHETIC_STD = (0.19, 0.19, 0.19)
SYNTHETIC_SIZES = {"train": 5000, "test": 1000, "conflict": 900}
SYNTHETIC_SPLITS = ("train", "test", "conflict")
IMAGE_SIZE = 32
MIN_IMAGE_SIZE = 16  # below it the shapes (radius size/4) lose their silhouettes
_SPLIT_STREAM = {"train": 0, "test": 1, "conflict": 2}
NUM_CLASSES = len(SYNTHETIC_CLASSES)
# texture: class k's grating runs at k·TEXTURE_ANGLE_STEP (10 orientations over 180°, 18° apart) with a
# jitter well inside half the spacing, so the orientation alone names the class
TEXTURE_ANGLE_STEP = math.pi / NUM_CLASSES
TEXTURE_ANGLE_JITTER = math.pi / 60
TEXTURE_CYCLES_PER_PIXEL = (0.36, 0.44)  # 0.72π-0.88π rad/px: the top of the spectrum (Nyquist = π)


def _shape_distance(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (positive inside, unit = shape radius) of class `label`'s silhouette."""
    r = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v))
    if label == 0:  # disk
        return 1.0 - r
    if label == 1:  # ring
        return 0.3 - np.abs(r - 0.75)
    if label == 2:  # square
        return 0.85 - box
    if label == 3:  # frame (hollow square)
        return 0.25 - np.abs(box - 0.8)
    if label == 4:  # triangle, apex up
        norm = math.hypot(1.8, 1.0)
        return np.minimum(0.8 - v, np.minimum((1 - (1.8 * u - v)) / norm, (1 - (-1.8 * u - v)) / norm))
    if label == 5:  # horizontal bar
        return np.minimum(1.1 - np.abs(u), 0.35 - np.abs(v))
    if label == 6:  # vertical bar
        return np.minimum(0.35 - np.abs(u), 1.1 - np.abs(v))
    if label == 7:  # cross
        return np.maximum(np.minimum(1.1 - np.abs(u), 0.3 - np.abs(v)), np.minimum(0.3 - np.abs(u), 1.1 - np.abs(v)))
    if label == 8:  # two blobs side by side
        return np.maximum(0.45 - np.hypot(u + 0.6, v), 0.45 - np.hypot(u - 0.6, v))
    if label == 9:  # two blobs stacked
        return np.maximum(0.45 - np.hypot(u, v + 0.6), 0.45 - np.hypot(u, v - 0.6))
    raise ValueError(f"label must be in 0..9, got {label}")


def render_shapes(labels: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE,
                  texture_labels: np.ndarray | None = None) -> np.ndarray:
    """Render one image per label: (N,) ints -> (N, size, size, 3) float32 in [0, 1].

    `labels` choose the shapes; `texture_labels` (default: the same) choose the grating orientations.

    numpy rather than torch: many small element-wise ops, no thread-pool overhead, and PCG64 streams are
    reproducible across platforms and versions.
    """
    n = len(labels)

    def uniform(lo: float, hi: float, *shape: int) -> np.ndarray:
        return rng.uniform(lo, hi, size=(n, *shape)).astype(np.float32)

    def per_image(a: np.ndarray) -> np.ndarray:  # (N,) -> (N, 1, 1) to broadcast over pixels
        return a[:, None, None]

    # layout jitter: centre, size, rotation
    half = (size - 1) / 2
    shift = size / 8  # ±4 px at 32×32
    cx, cy = half + uniform(-shift, shift), half + uniform(-shift, shift)
    radius = size / 4 * uniform(0.8, 1.2)
    angle = uniform(-math.pi / 12, math.pi / 12)
    # colours: random darker background, foreground brighter by a random offset with a colour tint
    # (a fixed polarity: with random polarity a small ViT stays near chance for many epochs)
    background = uniform(0.1, 0.5, 3)
    offset = uniform(0.3, 0.5)
    foreground = np.clip(background + offset[:, None] + uniform(-0.1, 0.1, 3), 0, 1)
    # high-frequency class cue: a sinusoidal grating in the class's orientation, random phase and strength
    texture_labels = labels if texture_labels is None else np.asarray(texture_labels)
    theta = (texture_labels * TEXTURE_ANGLE_STEP).astype(np.float32) + uniform(-TEXTURE_ANGLE_JITTER,
                                                                                TEXTURE_ANGLE_JITTER)
    phase = uniform(0, 2 * math.pi)
    period, strength = 1 / uniform(*TEXTURE_CYCLES_PER_PIXEL), uniform(0.08, 0.16)
    noise = 0.02 * rng.standard_normal((n, size, size, 3), dtype=np.float32)

    ys, xs = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    dx, dy = xs[None] - per_image(cx), ys[None] - per_image(cy)
    cos, sin, scale = per_image(np.cos(angle)), per_image(np.sin(angle)), per_image(radius)
    u, v = (cos * dx + sin * dy) / scale, (-sin * dx + cos * dy) / scale

    distance = np.empty((n, size, size), dtype=np.float32)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        distance[idx] = _shape_distance(int(label), u[idx], v[idx])
    mask = (1 / (1 + np.exp(-distance * scale / 0.7)))[..., None]  # soft edge of ~1 px

    wave = (xs[None] * per_image(np.cos(theta)) + ys[None] * per_image(np.sin(theta))) / per_image(period)
    grating = np.sin(2 * math.pi * wave + per_image(phase))  # smooth: its energy stays in the high band
    texture = (per_image(strength) * grating)[..., None]
    image = background[:, None, None] * (1 - mask) + foreground[:, None, None] * mask + texture + noise
    return np.clip(image, 0, 1)


def conflict_pairs(num_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(shape labels, texture labels), each (num_samples,): every ordered pair of distinct classes
    (90 of them) equally often (counts differ by at most one), in a seeded random order."""
    pairs = np.array([(a, b) for a in range(NUM_CLASSES) for b in range(NUM_CLASSES) if a != b])
    order = rng.permutation(np.arange(num_samples) % len(pairs))
    return pairs[order, 0], pairs[order, 1]


class SyntheticShapes(Dataset):
    """Deterministic, balanced, in-memory 10-class data set of size×size RGB images (module docstring).

    Args:
        split: "train" or "test" (independent images from the same distribution, shape and texture of the
            same class), or "conflict" (cue-conflict test images: shape of one class, texture of another;
            the label is the SHAPE's class, `texture_targets` holds the texture's).
        num_samples: number of images (default 5000 train, 1000 test, 900 conflict); classes (conflict:
            ordered class pairs) are balanced (counts differ by at most one).
        seed: the same (split, num_samples, seed, size) always gives the same images and labels.
        size: image side in pixels (>= 16; default 32). Layout scales with it (shape radius size/4,
            position jitter ±size/8); the texture keeps its period in pixels, so it stays high-frequency.
        transform: applied to a PIL image, like torchvision's CIFAR datasets; None gives the normalised
            tensor (x − SYNTHETIC_MEAN) / SYNTHETIC_STD directly (fast path).

    Attributes: `data` (N, size, size, 3) uint8, `targets` list of ints, `classes`, `shape_targets` and
    `texture_targets` (N,) int64 arrays (equal except in the conflict split).
    Items: (image, label) with image (3, size, size) float.
    """

    classes = SYNTHETIC_CLASSES
    mean, std = SYNTHETIC_MEAN, SYNTHETIC_STD

    def __init__(self, split: str = "train", *, num_samples: int | None = None, seed: int = 0,
                 transform: Callable | None = None, size: int = IMAGE_SIZE) -> None:
        if split not in _SPLIT_STREAM:
            raise ValueError(f"split must be one of {SYNTHETIC_SPLITS}, got {split!r}")
        if num_samples is None:
            num_samples = SYNTHETIC_SIZES[split]
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_IMAGE_SIZE:
            raise ValueError(f"size must be an int >= {MIN_IMAGE_SIZE}, got {size!r}")
        self.split, self.seed, self.transform, self.size = split, seed, transform, size
        rng = np.random.default_rng([int(seed), _SPLIT_STREAM[split]])
        if split == "conflict":
            labels, textures = conflict_pairs(num_samples, rng)
        else:
            labels = rng.permutation(np.arange(num_samples) % len(self.classes))
            textures = labels
        chunks = [render_shapes(labels[i:i + 2048], rng, size, texture_labels=textures[i:i + 2048])
                  for i in range(0, num_samples, 2048)]
        self.shape_targets, self.texture_targets = labels.astype(np.int64), textures.astype(np.int64)
        self.data = np.round(np.concatenate(chunks) * 255).astype(np.uint8)
        self.targets = labels.tolist()
        self._labels = torch.from_numpy(labels).long()
        self._normalised: Tensor | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images normalised, (N, 3, size, size) float32, and labels (N,) int64."""
        if self._normalised is None:
            x = torch.from_numpy(self.data).permute(0, 3, 1, 2).float().div_(255)
            mean = torch.tensor(self.mean).view(1, 3, 1, 1)
            std = torch.tensor(self.std).view(1, 3, 1, 1)
            self._normalised = (x - mean) / std
        return self._normalised, self._labels

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if self.transform is None:
            return self.tensors()[0][index], self.targets[index]
        return self.transform(Image.fromarray(np.asarray(self.data[index]))), self.targets[index]

    def __repr__(self) -> str:
        size = "" if self.size == IMAGE_SIZE else f", size={self.size}"
        return f"SyntheticShapes(split={self.split!r}, num_samples={len(self)}, seed={self.seed}{size})"

"""Shape-vs-texture bias on the cue-conflict split: counts against oracle models with a known answer."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from fastvit_analysis.data.synthetic import SyntheticShapes
from fastvit_analysis.features.shape_bias import shape_bias

pytestmark = pytest.mark.usefixtures("one_thread")


class LookupModel(nn.Module):
    """Answers a fixed label per image (found by its exact pixels): an oracle for one cue."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.keys = {tuple(x.flatten()[:64].tolist()): int(y) for x, y in zip(images, labels)}

    def forward(self, x):
        out = torch.zeros(len(x), 10)
        for i, img in enumerate(x):
            out[i, self.keys[tuple(img.flatten()[:64].tolist())]] = 1.0
        return out + 0 * self.weight


def _wilson(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_oracles_give_bias_one_and_zero_and_mixtures_their_fraction():
    ds = SyntheticShapes("conflict", num_samples=90, seed=1)
    x, _ = ds.tensors()
    assert shape_bias(LookupModel(x, ds.shape_targets), ds).summary()["shape bias"].value == 1.0
    texture = shape_bias(LookupModel(x, ds.texture_targets), ds)
    assert texture.summary()["shape bias"].value == 0.0 and texture.texture_decisions == 90
    # 30 images follow the shape, 20 the texture, 40 a third class
    labels = ds.texture_targets.copy()
    labels[:30] = ds.shape_targets[:30]
    third = [next(k for k in range(10) if k not in (s, t)) for s, t in zip(ds.shape_targets, ds.texture_targets)]
    labels[50:] = third[50:]
    result = shape_bias(LookupModel(x, labels), ds, batch_size=7)
    assert (result.shape_decisions, result.texture_decisions, result.other_decisions) == (30, 20, 40)
    bias = result.summary()["shape bias"]
    assert bias.value == pytest.approx(0.6) and bias.n == 50
    assert bias.ci95 == pytest.approx(_wilson(30, 50))
    assert result.summary()["shape decisions (%)"].value == pytest.approx(100 * 30 / 90)
    assert result.to_dict()["summary"]["shape bias"]["n"] == 50


def test_bad_dataset():
    with pytest.raises(TypeError, match="dataset"):
        shape_bias(nn.Linear(2, 2), [(torch.zeros(2), 0)])

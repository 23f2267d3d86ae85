"""One small, real instance of every result class (tiny models, a few seconds in all), shared by the
round-trip tests of `from_dict` and the figure tests. Not a test module."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def _vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=3).eval()


def _batches(sizes, shape, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)) for n in sizes]


@functools.lru_cache(maxsize=None)
def cases() -> dict:
    """{class name: result}; every class of `fastvit_analysis.common.results._RESULT_MODULES`."""
    import fastvit_analysis as fa
    from fastvit_analysis.claims import ClaimRow, ClaimsResult
    from fastvit_analysis.common.intervals import Estimate
    from fastvit_analysis.features.shape_bias import ShapeBiasResult
    from fastvit_analysis.training.result import TrainResult

    ce = nn.CrossEntropyLoss()
    mlp, data = _mlp(), _batches([8] * 4, (4,))
    out = {
        "HessianSpectrumResult": fa.hessian_spectrum(mlp, ce, data, top_k=2, progress=False),
        "HessianTraceResult": fa.hessian_trace(mlp, ce, data, num_probes=6, progress=False),
        "HessianDensityResult": fa.hessian_density(mlp, ce, data, num_probes=3, steps=6, progress=False),
        "MaxEigenvalueSpectrumResult": fa.max_eigenvalue_spectrum(mlp, ce, data, batch_size=8, top_k=2, which="SA",
                                                            progress=False),
        "BlockSpectraResult": fa.block_spectra(mlp, ce, data, top_k=1, num_probes=4, progress=False),
        "LandscapeResult": fa.loss_landscape(mlp, ce, _batches([4] * 9, (4,)), steps=3, progress=False),
    }
    ckpts = [{k: v + 0.1 * torch.randn_like(v) for k, v in mlp.state_dict().items()} for _ in range(4)]
    out["TrajectoryResult"] = fa.trajectory(ckpts, ce, data, model=mlp, steps=3, progress=False)
    vit, images = _vit(), _batches([4] * 9, (3, 16, 16))
    out["FourierResult"], out["VarianceResult"] = fa.feature_statistics(vit, images, progress=False,
                                                                        num_resamples=200)
    out["CKAResult"] = fa.minibatch_cka(vit, images, progress=False, num_resamples=200)
    out["NoiseRobustnessResult"] = fa.noise_robustness(vit, images, freqs=[0.1 * math.pi, 0.9 * math.pi],
                                                       progress=False)
    out["ShapeBiasResult"] = ShapeBiasResult(12, 7, 3, [0, 1, 2] * 7 + [1])
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 30.0 + e, "lr": 0.1, "test_loss": None,
                "test_acc": 25.0 + 2 * e, "samples": 64, "test_samples": 32, "seconds": 0.5} for e in (1, 2, 3)]
    out["TrainResult"] = TrainResult(history, 3, out="/tmp/x", elapsed_s=1.5, model_name="mlp")
    out["ClaimsResult"] = ClaimsResult([
        ClaimRow("C2", "non-convexity", Estimate(0.125, (0.05, math.nan), 64), 1, "supported", "v 0.3"),
        ClaimRow("C1", "flatness", None, -1, "not measured", "-")], {"cnn": "r", "vit": "v"})
    return out


def same(a, b) -> bool:
    """Equal field by field: tensors and arrays by value (NaN equal to NaN, float32 equal to the float64 of
    the same number), dataclasses by type and fields, containers item by item."""
    import dataclasses

    if isinstance(a, (torch.Tensor, np.ndarray)) or isinstance(b, (torch.Tensor, np.ndarray)):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or (x.dtype == bool) != (y.dtype == bool):
            return False
        return bool(np.array_equal(x.astype(np.float64), y.astype(np.float64), equal_nan=True))
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a) if f.metadata.get("serialize", True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b

"""Fourier and variance statistics of every latent from one pass over the data (one forward per batch).

Example:
    >>> import timm, torch
    >>> net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1])
    >>> fourier, variance = feature_statistics(net, (torch.randn(4, 3, 32, 32), torch.zeros(4)), progress=False)
    >>> fourier.names == variance.names, fourier.names[:2]
    (True, ['maxpool', 'layer1.0'])
    >>> figures = fourier.plot(), variance.plot()
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import Tensor, nn

from .extract import LatentExtractor, LatentSpec
from .fourier import FourierAccumulator, FourierResult
from .variance import VarianceAccumulator, VarianceResult


def feature_statistics(model: nn.Module, data: Any, *, layers: Sequence[str | LatentSpec] | None = None,
                       kinds: Mapping[str, str] | None = None, spectrum: str = "diagonal",
                       backend: str | None = None, progress: bool = True, bootstrap_seed: int = 0,
                       num_resamples: int = 1000) -> tuple[FourierResult, VarianceResult]:
    """`fourier_analysis` and `variance_analysis` together, sharing each batch's forward pass.

    Arguments as in `fourier_analysis`. Returns (FourierResult, VarianceResult).
    """
    boot = dict(bootstrap_seed=bootstrap_seed, num_resamples=num_resamples)
    FourierAccumulator([], spectrum=spectrum, **boot)  # validate before running anything
    extractor = LatentExtractor(model, layers, kinds=kinds)
    fourier = FourierAccumulator(extractor.specs, spectrum=spectrum, backend=backend, **boot)
    variance = VarianceAccumulator(extractor.specs, backend=backend, **boot)

    def on_latent(spec: LatentSpec, z: Tensor) -> None:
        fourier(spec, z)
        variance(spec, z)

    samples = extractor.stream(data, on_latent, progress=progress, desc="feature statistics")
    depths = extractor.depths()
    return fourier.result(extractor.specs, depths, samples), variance.result(extractor.specs, depths, samples)

"""fastvit_analysis: fast, exact analyses of how vision models work.

Hessian spectra, loss landscapes, Fourier and variance statistics of feature maps,
mini-batch CKA and frequency-noise robustness, as in "How Do Vision Transformers
Work?" (Park & Kim, ICLR 2022), plus the AlterNet models it proposes.

Example:
    >>> import torch, fastvit_analysis as fa
    >>> z = torch.randn(8, 16, 14, 14)
    >>> fa.relative_log_amplitude(z).shape
    torch.Size([7])
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"


def _alias_source_subpackage(name: str, folder: str) -> None:
    """In a source checkout or editable install, kernels/ and csrc/ sit beside the
    package; make them importable as fastvit_analysis.<name> like in a wheel."""
    full = f"{__name__}.{name}"
    if full in sys.modules or (Path(__file__).parent / name).is_dir():
        return
    src = Path(__file__).resolve().parent.parent / folder
    init = src / "__init__.py"
    if not init.is_file():
        return
    spec = importlib.util.spec_from_file_location(full, init, submodule_search_locations=[str(src)])
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)
    globals()[name] = module


_alias_source_subpackage("kernels", "kernels")
_alias_source_subpackage("csrc", "csrc")

# Public name -> module that defines it (imported on first access).
_EXPORTS = {
    # curvature
    "HessianOperator": "fastvit_analysis.curvature.operator",
    "GGNOperator": "fastvit_analysis.curvature.operator",
    "EmpiricalFisherOperator": "fastvit_analysis.curvature.operator",
    "hessian_spectrum": "fastvit_analysis.curvature.spectrum",
    "hessian_trace": "fastvit_analysis.curvature.trace",
    "hessian_density": "fastvit_analysis.curvature.density",
    "max_eigenvalue_spectrum": "fastvit_analysis.curvature.max_eigen",
    "block_spectra": "fastvit_analysis.curvature.blocks",
    # landscape
    "loss_landscape": "fastvit_analysis.landscape.grid",
    "filter_normalized_directions": "fastvit_analysis.landscape.directions",
    "interpolate": "fastvit_analysis.landscape.trajectory",
    "trajectory": "fastvit_analysis.landscape.trajectory",
    # features
    "extract_features": "fastvit_analysis.features.extract",
    "relative_log_amplitude": "fastvit_analysis.features.stats",
    "feature_map_variance": "fastvit_analysis.features.stats",
    "fourier_analysis": "fastvit_analysis.features.fourier",
    "variance_analysis": "fastvit_analysis.features.variance",
    "linear_cka": "fastvit_analysis.features.cka",
    "minibatch_cka": "fastvit_analysis.features.cka",
    "frequency_noise": "fastvit_analysis.features.noise",
    "noise_robustness": "fastvit_analysis.features.noise",
    "feature_statistics": "fastvit_analysis.features.statistics",
    "LatentExtractor": "fastvit_analysis.features.extract",
    "LatentSpec": "fastvit_analysis.features.extract",
    # attention
    "fused_attention": "fastvit_analysis.attention.fused",
    "patch_attention": "fastvit_analysis.attention.patch",
    # the paper's claims (docs/methods.md §5)
    "evaluate_claims": "fastvit_analysis.claims",
    # sweeps, training
    "run_sweep": "fastvit_analysis.sweep",
    "train": "fastvit_analysis.training",
    # install check
    "selfcheck": "fastvit_analysis.selfcheck",
}

__all__ = sorted(_EXPORTS) + ["__version__"]
_SUBMODULES = {"attention", "cli", "common", "curvature", "data", "features", "landscape", "models", "ops", "plot",
               "sweep", "training"}


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None and name in _SUBMODULES:  # `fa.models.create(...)` without importing it first
        return importlib.import_module(f"{__name__}.{name}")
    if module_name is None:
        raise AttributeError(f"module 'fastvit_analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


# Registering the models with timm is a side effect users rely on:
# `import fastvit_analysis; timm.create_model("alternet50_cifar")`. It needs torch and timm (seconds),
# which `import fastvit_analysis` itself must not cost (`fastvit-analysis --help` answers without
# torch). So the registration runs when timm is imported: at once if it already is, else right after
# timm's own module has executed, through a one-shot import hook.
class _RegisterModelsWithTimm(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "timm":
            return None
        _remove_timm_hook()
        spec = importlib.util.find_spec("timm")  # the finders after this one
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader_exec = spec.loader.exec_module

        def exec_module(module):
            loader_exec(module)
            importlib.import_module(f"{__name__}.models")

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _remove_timm_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterModelsWithTimm)]


if "timm" in sys.modules:
    from . import models as _models  # noqa: E402,F401
else:
    _remove_timm_hook()
    sys.meta_path.insert(0, _RegisterModelsWithTimm())

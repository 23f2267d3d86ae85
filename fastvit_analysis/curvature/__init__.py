"""Hessian of a loss: HVP operator, Lanczos eigen-solver, trace, spectral density, max-eigenvalue spectra.

Modules: operator (CurvatureOperator base; HessianOperator, GGNOperator, EmpiricalFisherOperator,
MiniBatchHessians), krylov (flat-buffer vector work), lanczos
(thick-restart Lanczos, batched), power (PyHessian's baseline), hutchpp (trace estimators),
spectrum / trace / density / max_eigen / blocks (the public analyses), sharding; figures in fastvit_analysis.plot.
"""
from ..common.deprecation import module_aliases
from .blocks import BlockSpectraResult, block_spectra
from .density import HessianDensityResult, hessian_density
from .max_eigen import MaxEigenvalueSpectrumResult, max_eigenvalue_spectrum
from .operator import CurvatureOperator, EmpiricalFisherOperator, GGNOperator, HessianOperator, MiniBatchHessians
from .plot import plot_density, plot_max_eigenvalue_spectrum
from .spectrum import HessianSpectrumResult, hessian_spectrum
from .trace import HessianTraceResult, hessian_trace

__all__ = ["CurvatureOperator", "HessianOperator", "GGNOperator", "EmpiricalFisherOperator", "MiniBatchHessians",
           "hessian_spectrum", "HessianSpectrumResult", "hessian_trace",
           "HessianTraceResult", "hessian_density", "HessianDensityResult", "max_eigenvalue_spectrum",
           "MaxEigenvalueSpectrumResult", "block_spectra", "BlockSpectraResult", "plot_density",
           "plot_max_eigenvalue_spectrum"]

# the result classes' names before issue 16's vocabulary, kept one release: importing one warns
__getattr__ = module_aliases({"HessianSpectrum": HessianSpectrumResult, "HessianTrace": HessianTraceResult,
                              "HessianDensity": HessianDensityResult,
                              "MaxEigenvalueSpectrum": MaxEigenvalueSpectrumResult,
                              "BlockSpectra": BlockSpectraResult}, __name__)

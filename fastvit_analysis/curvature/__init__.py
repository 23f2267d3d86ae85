"""Hessian of a loss: HVP operator, Lanczos eigen-solver, trace, spectral density, max-eigenvalue spectra.

Modules: operator (CurvatureOperator base; HessianOperator, GGNOperator, EmpiricalFisherOperator,
MiniBatchHessians), krylov (flat-buffer vector work), lanczos
(thick-restart Lanczos, batched), power (PyHessian's baseline), hutchpp (trace estimators),
spectrum / trace / density / max_eigen / blocks (the public analyses), sharding; figures in fastvit_analysis.plot.
"""
from .blocks import BlockSpectra, block_spectra
from .density import HessianDensity, hessian_density
from .max_eigen import MaxEigenvalueSpectrum, max_eigenvalue_spectrum
from .operator import CurvatureOperator, EmpiricalFisherOperator, GGNOperator, HessianOperator, MiniBatchHessians
from .plot import plot_density, plot_max_eigenvalue_spectrum
from .spectrum import HessianSpectrum, hessian_spectrum
from .trace import HessianTrace, hessian_trace

__all__ = ["CurvatureOperator", "HessianOperator", "GGNOperator", "EmpiricalFisherOperator", "MiniBatchHessians", "hessian_spectrum", "HessianSpectrum", "hessian_trace",
           "HessianTrace", "hessian_density", "HessianDensity", "max_eigenvalue_spectrum",
           "MaxEigenvalueSpectrum", "block_spectra", "BlockSpectra", "plot_density", "plot_max_eigenvalue_spectrum"]

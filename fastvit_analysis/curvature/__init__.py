"""Hessian of a loss: HVP operator, Lanczos eigen-solver, trace, spectral density, max-eigenvalue spectra."""

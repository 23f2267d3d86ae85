"""The dispatch layer: one Python function per kernel, running the compiled C++/CUDA op
(`torch.ops.fastvit_analysis.*`) or an exact eager-torch fallback.

Choose with `backend="auto" | "compiled" | "eager"` or $FASTVIT_OPS_BACKEND. Importing this
module never compiles anything; the extension is imported (or built once and cached) on the
first call that wants it.
"""
from ._backend import BACKENDS, resolve_backend
from ._extension import ExtensionUnavailable, extension_error, extension_source, has_kernel_for, load_extension
from .feature_stats import diag_log_amplitude, feature_moments

__all__ = [
    "BACKENDS",
    "ExtensionUnavailable",
    "diag_log_amplitude",
    "extension_error",
    "extension_source",
    "feature_moments",
    "has_kernel_for",
    "load_extension",
    "resolve_backend",
]

"""Which implementation runs an op: the compiled C++/CUDA extension or eager torch."""
from __future__ import annotations

import os

BACKENDS = ("auto", "compiled", "eager")
ENV_VAR = "FASTVIT_OPS_BACKEND"


def resolve_backend(backend: str | None) -> str:
    """`backend` argument, else $FASTVIT_OPS_BACKEND, else "auto".

    "auto" runs the compiled op when the extension is (or can be) built and has a kernel
    for the tensor's device, else eager torch; "compiled" insists on the extension;
    "eager" never touches it.
    """
    source = "backend"
    if backend is None:
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
        source = f"${ENV_VAR}"
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {backend!r}")
    return backend.lower()

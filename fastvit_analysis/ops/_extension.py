"""Loads the C++/CUDA extension that registers the `torch.ops.fastvit_analysis` ops.

Order: the ahead-of-time build `fastvit_analysis._C` (setup.py, pip --no-build-isolation),
else a one-time compile of the shipped sources with torch.utils.cpp_extension.load (ninja),
cached under ~/.cache/fastvit_analysis (or $FASTVIT_CACHE_DIR). Nothing is compiled at import
time: the first call that wants the compiled backend triggers it.

A failed CUDA compile (nvcc error, missing headers, ...) never leaves the user without ops: the
CPU sources are built instead, CUDA tensors take the eager torch path, and one warning says so.
FASTVIT_REQUIRE_CUDA_EXTENSION=1 makes that failure fatal (GPU CI).
"""
from __future__ import annotations

import glob
import hashlib
import importlib
import os
import threading
import warnings
from pathlib import Path

import torch

NAMESPACE = "fastvit_analysis"
OPS = ("diag_log_amplitude", "feature_moments")
REQUIRE_CUDA_ENV = "FASTVIT_REQUIRE_CUDA_EXTENSION"

_lock = threading.Lock()
_state: dict = {"tried": False, "ok": False, "error": None, "source": None, "warned": False,
                "devices": frozenset()}


class ExtensionUnavailable(RuntimeError):
    """The compiled extension could not be imported or built."""


def _ops_registered() -> bool:
    namespace = getattr(torch.ops, NAMESPACE)
    return all(hasattr(namespace, op) for op in OPS)


def source_dir() -> Path:
    """Folder holding ops/*.cpp, ops/cpu/*.cpp, ops/cuda/*.cu (fastvit_analysis.csrc)."""
    csrc = importlib.import_module("fastvit_analysis.csrc")
    paths = list(getattr(csrc, "__path__", []))
    if paths:
        return Path(paths[0])
    return Path(csrc.__file__).parent


def _sources(with_cuda: bool) -> list[str]:
    src = source_dir() / "ops"
    files = sorted(glob.glob(str(src / "*.cpp"))) + sorted(glob.glob(str(src / "cpu" / "*.cpp")))
    if with_cuda:
        files += sorted(glob.glob(str(src / "cuda" / "*.cu")))
    return files


def cache_dir(with_cuda: bool | None = None) -> Path:
    """Build folder keyed by torch version, CUDA or not, and the sources' content, so that
    checkouts with identical sources share one build and different ones never collide."""
    root = os.environ.get("FASTVIT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                 "fastvit_analysis")
    with_cuda = _want_cuda() if with_cuda is None else with_cuda
    digest = hashlib.sha256()
    for path in _sources(with_cuda) + sorted(glob.glob(str(source_dir() / "ops" / "*.h"))):
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    flavour = f"cu{torch.version.cuda}" if with_cuda else "cpu"
    return Path(root) / f"torch{torch.__version__.split('+')[0]}-{flavour}-{digest.hexdigest()[:12]}"


def _want_cuda() -> bool:
    from torch.utils import cpp_extension

    return bool(torch.version.cuda and torch.cuda.is_available() and cpp_extension.CUDA_HOME)


def cuda_required() -> bool:
    return os.environ.get(REQUIRE_CUDA_ENV, "0") == "1"


def _jit_compile() -> None:
    """Compile with CUDA when possible; on a failed CUDA build fall back to the CPU sources."""
    if not _want_cuda():
        _jit_compile_flavour(False)
        return
    try:
        _jit_compile_flavour(True)
    except Exception as error:
        if cuda_required():
            raise ExtensionUnavailable(f"the CUDA build of the extension failed and "
                                       f"{REQUIRE_CUDA_ENV}=1: {_one_line(error)}") from error
        warnings.warn(f"fastvit_analysis: CUDA build of the extension failed ({_one_line(error)}); "
                      f"using the CPU extension and the torch CUDA path "
                      f"(set {REQUIRE_CUDA_ENV}=1 to make this fatal)", RuntimeWarning, stacklevel=4)
        _state["cuda_error"] = error
        _jit_compile_flavour(False)


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]


def _jit_compile_flavour(with_cuda: bool) -> None:
    from torch.utils import cpp_extension

    sources = _sources(with_cuda)
    if not sources:
        raise ExtensionUnavailable(f"no C++ sources found under {source_dir() / 'ops'}")
    cflags = ["-O3", "-fopenmp", "-fno-math-errno"]  # cpp_extension adds the -std torch needs
    kwargs = {}
    if with_cuda:
        cflags.append("-DFASTVIT_WITH_CUDA")
        kwargs["extra_cuda_cflags"] = ["-O3", "--use_fast_math", "-DFASTVIT_WITH_CUDA"]
    build = cache_dir(with_cuda)
    build.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(
        name="fastvit_analysis_ops",
        sources=sources,
        extra_cflags=cflags,
        extra_ldflags=["-fopenmp"],
        build_directory=str(build),
        is_python_module=False,
        verbose=os.environ.get("FASTVIT_VERBOSE_BUILD", "0") == "1",
        **kwargs,
    )


def _load() -> None:
    if _ops_registered():
        _state["source"] = _state["source"] or "preloaded"
        return
    try:
        importlib.import_module("fastvit_analysis._C")
        _state["source"] = "fastvit_analysis._C"
    except ImportError as aot_error:
        if os.environ.get("FASTVIT_NO_JIT", "0") == "1":
            raise ExtensionUnavailable(f"fastvit_analysis._C is not built ({aot_error}) and "
                                       f"FASTVIT_NO_JIT=1 forbids compiling it") from aot_error
        _jit_compile()
        _state["source"] = f"jit:{cache_dir(_want_cuda() and 'cuda_error' not in _state)}"
    if not _ops_registered():
        raise ExtensionUnavailable(f"the extension loaded from {_state['source']} did not register "
                                   f"torch.ops.{NAMESPACE}.{{{', '.join(OPS)}}}")


def load_extension() -> bool:
    """Import or build the extension once; True when its ops are registered.

    Failure is remembered (no retry within a process); `extension_error()` says why.
    """
    if _state["tried"]:
        return _state["ok"]
    with _lock:
        if not _state["tried"]:
            try:
                _load()
                from ._fake import register_fakes

                register_fakes()  # register_fake needs the op schemas
                _state["devices"] = frozenset(
                    device for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
                    if all(torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", key)
                           for op in OPS))
                _state["ok"] = True
            except Exception as error:  # compiler missing, build error, ABI mismatch, ...
                _state["error"] = error
                _state["ok"] = False
            _state["tried"] = True
    return _state["ok"]


def extension_error() -> BaseException | None:
    return _state["error"]


def extension_source() -> str | None:
    """Where the ops came from: 'fastvit_analysis._C', 'jit:<dir>', 'preloaded', or None."""
    return _state["source"] if _state["ok"] else None


def warn_fallback_once() -> None:
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(f"fastvit_analysis: the compiled ops are unavailable ({_state['error']!r}); "
                      f"using the eager torch implementation. Set FASTVIT_OPS_BACKEND=eager to "
                      f"silence this.", RuntimeWarning, stacklevel=3)


def require_extension() -> None:
    if not load_extension():
        raise ExtensionUnavailable(f"backend='compiled' but the fastvit_analysis extension is "
                                   f"unavailable: {_state['error']!r}") from _state["error"]


def is_loaded() -> bool:
    """True when load_extension() has already succeeded (never loads; safe while tracing)."""
    return _state["ok"]


def has_kernel_for(op: str, device: torch.device) -> bool:
    """True when the loaded extension has a kernel of `op` for `device` (a CPU-only build has no
    CUDA one). A plain lookup filled in at load time, so torch.compile can trace it."""
    return op in OPS and device.type in _state["devices"]

"""A failed CUDA compile never breaks the install: setup.py's build_ext and the on-first-use JIT
fall back to the CPU extension with one warning line; FASTVIT_REQUIRE_CUDA_EXTENSION=1 makes it
fatal. nvcc's failure is simulated (no GPU or CUDA toolkit needed)."""
import importlib.util
from distutils.errors import CompileError
from pathlib import Path

import pytest
import setuptools
from setuptools.command.build_ext import build_ext as setuptools_build_ext
from torch.utils import cpp_extension

from fastvit_analysis.ops import _extension

ROOT = Path(__file__).resolve().parents[2]


def _setup_module():
    spec = importlib.util.spec_from_file_location("fastvit_setup_under_test", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # __name__ is not "__main__": setup() is not called
    return module


def _failing_nvcc(built):
    def build_extension(self, ext):
        if any(str(src).endswith(".cu") for src in ext.sources):
            raise CompileError("nvcc fatal   : Unsupported gpu architecture 'compute_90'")
        built.append(ext)
    return build_extension


def _exts():
    cpu = cpp_extension.CppExtension("fastvit_analysis._C", ["csrc/ops/feature_stats.cpp"])
    cuda = cpp_extension.CppExtension("fastvit_analysis._C", ["csrc/ops/feature_stats.cpp",
                                                             "csrc/ops/cuda/feature_stats_cuda.cu"])
    return cpu, cuda


def test_setup_build_falls_back_to_cpu_extension_with_one_warning(monkeypatch, capsys):
    monkeypatch.delenv("FASTVIT_REQUIRE_CUDA_EXTENSION", raising=False)
    built = []
    monkeypatch.setattr(setuptools_build_ext, "build_extension", _failing_nvcc(built))
    cpu, cuda = _exts()
    cls = _setup_module().cuda_fallback_build_ext(cpp_extension.BuildExtension, cpu)
    cls(setuptools.Distribution()).build_extension(cuda)
    assert built == [cpu]
    warning = [line for line in capsys.readouterr().out.splitlines() if "WARNING fastvit_analysis" in line]
    assert len(warning) == 1 and "CompileError" in warning[0] and "FASTVIT_REQUIRE_CUDA_EXTENSION" in warning[0]


def test_setup_build_failure_is_fatal_when_cuda_required(monkeypatch):
    monkeypatch.setenv("FASTVIT_REQUIRE_CUDA_EXTENSION", "1")
    built = []
    monkeypatch.setattr(setuptools_build_ext, "build_extension", _failing_nvcc(built))
    cpu, cuda = _exts()
    cls = _setup_module().cuda_fallback_build_ext(cpp_extension.BuildExtension, cpu)
    with pytest.raises(CompileError, match="nvcc fatal"):
        cls(setuptools.Distribution()).build_extension(cuda)
    assert built == []


def test_setup_builds_cuda_extension_when_nvcc_works(monkeypatch):
    built = []
    monkeypatch.setattr(setuptools_build_ext, "build_extension", lambda self, ext: built.append(ext))
    cpu, cuda = _exts()
    cls = _setup_module().cuda_fallback_build_ext(cpp_extension.BuildExtension, cpu)
    cls(setuptools.Distribution()).build_extension(cuda)
    assert built == [cuda]


def _fake_load(calls):
    def load(name, sources, **kwargs):
        calls.append(sources)
        if any(src.endswith(".cu") for src in sources):
            raise RuntimeError("Error building extension 'fastvit_analysis_ops':\nnvcc fatal : cannot find ptxas")
    return load


def test_jit_falls_back_to_cpu_sources_with_one_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTVIT_REQUIRE_CUDA_EXTENSION", raising=False)
    monkeypatch.setenv("FASTVIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_extension, "_want_cuda", lambda: True)
    monkeypatch.setattr(_extension, "_state", dict(_extension._state))
    calls = []
    monkeypatch.setattr(cpp_extension, "load", _fake_load(calls))
    with pytest.warns(RuntimeWarning, match="CUDA build of the extension failed .*cannot find ptxas") as record:
        _extension._jit_compile()
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert len(calls) == 2
    assert any(s.endswith(".cu") for s in calls[0]) and not any(s.endswith(".cu") for s in calls[1])
    assert "cuda_error" in _extension._state


def test_jit_cuda_failure_is_fatal_when_required(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTVIT_REQUIRE_CUDA_EXTENSION", "1")
    monkeypatch.setenv("FASTVIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_extension, "_want_cuda", lambda: True)
    monkeypatch.setattr(_extension, "_state", dict(_extension._state))
    calls = []
    monkeypatch.setattr(cpp_extension, "load", _fake_load(calls))
    with pytest.raises(_extension.ExtensionUnavailable, match="FASTVIT_REQUIRE_CUDA_EXTENSION=1"):
        _extension._jit_compile()
    assert len(calls) == 1

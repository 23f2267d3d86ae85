"""Build script: packages + the optional C++/CUDA extension `fastvit_analysis._C`.

The extension is built ahead of time only when torch is importable at build time
(`pip install --no-build-isolation ...`). Otherwise the pure-Python package is
installed and `fastvit_analysis.ops` compiles the same sources on first use with
torch.utils.cpp_extension.load (cached under ~/.cache/fastvit_analysis).

CUDA sources (csrc/ops/cuda/*.cu) are built only when torch has CUDA, nvcc is
found, and either a GPU is visible or FASTVIT_BUILD_CUDA=1 is set.
Set FASTVIT_NO_EXTENSION=1 to skip the ahead-of-time build entirely.
A failed CUDA build never fails the install: the CPU extension is built instead (CUDA tensors
then take the torch path) and one warning line is printed; FASTVIT_REQUIRE_CUDA_EXTENSION=1
makes the failure fatal.
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _packages():
    pkgs = find_packages(include=["fastvit_analysis", "fastvit_analysis.*"])
    # kernels/ and csrc/ live at the top level of the repository but install
    # inside the package (fastvit_analysis.kernels, fastvit_analysis.csrc).
    pkgs += ["fastvit_analysis.kernels", "fastvit_analysis.csrc"]
    return pkgs


def _extensions():
    if os.environ.get("FASTVIT_NO_EXTENSION", "0") == "1":
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("fastvit_analysis: torch not importable at build time; the extension "
              "will be compiled on first use.")
        return [], {}

    sources = sorted(glob.glob(os.path.join("csrc", "ops", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "ops", "cpu", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "ops", "cuda", "*.cu")))
    if not sources:
        return [], {}

    want_cuda = (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and cuda_sources
        and (torch.cuda.is_available() or os.environ.get("FASTVIT_BUILD_CUDA", "0") == "1")
    )
    # cpp_extension adds the -std torch needs (c++20); -fno-math-errno lets sqrt vectorise.
    extra = {"cxx": ["-O3", "-fopenmp", "-fno-math-errno"]}
    define_macros = []
    libraries = ["gomp"]
    cpu_ext = cpp_extension.CppExtension(
        name="fastvit_analysis._C",
        sources=list(sources),
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args=dict(extra),
        define_macros=list(define_macros),
        libraries=list(libraries),
    )
    if not want_cuda:
        return [cpu_ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}
    ext = cpp_extension.CUDAExtension(
        name="fastvit_analysis._C",
        sources=sources + cuda_sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={**extra, "nvcc": ["-O3", "--use_fast_math"]},
        define_macros=define_macros + [("FASTVIT_WITH_CUDA", None)],
        libraries=libraries,
    )
    return [ext], {"build_ext": cuda_fallback_build_ext(cpp_extension.BuildExtension, cpu_ext)}


def cuda_fallback_build_ext(base, cpu_ext):
    """A build_ext that, when building the CUDA extension fails, builds `cpu_ext` instead
    (one warning line), unless FASTVIT_REQUIRE_CUDA_EXTENSION=1."""
    class BuildExtWithCpuFallback(base.with_options(use_ninja=True)):
        def build_extension(self, ext):
            try:
                return super().build_extension(ext)
            except Exception as error:  # nvcc missing/broken, headers, ptxas, link errors, ...
                if ext.name != cpu_ext.name or os.environ.get("FASTVIT_REQUIRE_CUDA_EXTENSION", "0") == "1":
                    raise
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                print(f"WARNING fastvit_analysis: CUDA build of {ext.name} failed "
                      f"({type(error).__name__}: {lines[-1] if lines else ''}); building the CPU "
                      f"extension (CUDA tensors use the torch path). Set "
                      f"FASTVIT_REQUIRE_CUDA_EXTENSION=1 to make this fatal.")
                return super().build_extension(cpu_ext)
    return BuildExtWithCpuFallback


if __name__ == "__main__":
    ext_modules, cmdclass = _extensions()
    setup(
        packages=_packages(),
        package_dir={
            "fastvit_analysis.kernels": "kernels",
            "fastvit_analysis.csrc": "csrc",
        },
        package_data={
            "fastvit_analysis.csrc": ["*.h", "ops/*.cpp", "ops/*.h", "ops/cpu/*.cpp", "ops/cpu/*.h",
                                      "ops/cuda/*.cu", "ops/cuda/*.cuh", "ops/cuda/*.h"],
            "fastvit_analysis": ["py.typed"],
        },
        ext_modules=ext_modules,
        cmdclass=cmdclass,
    )

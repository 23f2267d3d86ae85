"""Ahead-of-time compile checks for the GPU code, runnable on a machine without a GPU.

* CUDA: every csrc/ops/cuda/*.cu compiles with nvcc for each target (sm_80, sm_90) against
  the installed torch headers; fails on a compile error or any register spill (`-Xptxas -v`).
* Triton: each attention kernel x each autotune config *kept for that target* by
  kernels.attention_configs x dtype x head dim x JVP compiles with
  ``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`` to a cubin, and its
  ``metadata.shared`` stays within the target's shared-memory limit.

Usage (2 workers, a fresh Triton cache each run, nothing cached across runs)::

    python -m tools.compile_checks --smoke    # what pytest runs when FASTVIT_COMPILE_CHECKS=1
    python -m tools.compile_checks            # every kernel x every kept config, both targets
    python -m tools.compile_checks --full     # x every dtype x head dim x JVP (hours on 2 cores)

One compile takes 1.5-20 s on an idle core for sm_90 (up to ~70 s for sm_80's 128x128 JVP
tiles), so only the smoke matrix fits a CI budget of a few minutes on 2 cores.

Exit status 1 and one line per failure when anything fails.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (80, 90)
DTYPES = ("fp16", "bf16", "fp32")
HEAD_DIMS = (16, 32, 64, 128)
_ELT_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
# Pointer arguments that always hold float32 (row statistics, the bias-gradient buffer).
_FP32_POINTERS = {"LSE", "TLSE", "DELTA", "TDELTA", "DS"}


@dataclasses.dataclass(frozen=True)
class TritonCase:
    kernel: str          # "fwd" | "bwd_kv" | "bwd_q"
    config: tuple        # (BLOCK_M, BLOCK_N, num_warps, num_stages)
    dtype: str           # "fp16" | "bf16" | "fp32"
    head_dim: int
    jvp: bool
    cc: int              # 80 | 90

    def label(self) -> str:
        m, n, w, s = self.config
        return (f"{self.kernel} {m}x{n} w{w} s{s} {self.dtype} D={self.head_dim} "
                f"jvp={int(self.jvp)} sm_{self.cc}")


@dataclasses.dataclass
class Outcome:
    label: str
    ok: bool
    detail: str
    seconds: float
    shared: int | None = None


# ----------------------------------------------------------------------------- Triton
def _kernel_fn(kernel: str):
    from kernels import attention_bwd, attention_fwd

    tuned = {"fwd": attention_fwd.attention_fwd_kernel, "bwd_kv": attention_bwd.bwd_kv_kernel,
             "bwd_q": attention_bwd.bwd_q_kernel}[kernel]
    return tuned.fn


def _signature(fn, dtype: str, constexprs: dict) -> dict:
    names = fn.arg_names
    first_scalar = names.index("sb_b")
    sig = {}
    for i, name in enumerate(names):
        if name in constexprs:
            sig[name] = "constexpr"
        elif i < first_scalar:
            sig[name] = "*fp32" if name in _FP32_POINTERS else f"*{dtype}"
        elif name == "scale":
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


def compile_triton(case: TritonCase) -> Outcome:
    """Compile one case to a cubin; ok when it compiles and fits the target's shared memory."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels.attention_configs import SHARED_LIMITS

    start = time.perf_counter()
    m, n, warps, stages = case.config
    fn = _kernel_fn(case.kernel)
    constexprs = {"HAS_BIAS": True, "HAS_TBIAS": case.jvp, "JVP": case.jvp,
                  "IEEE": case.dtype == "fp32", "HEAD_DIM": case.head_dim,
                  "BLOCK_M": m, "BLOCK_N": n}
    if "STORE_DS" in fn.arg_names:
        constexprs["STORE_DS"] = True
    try:
        compiled = triton.compile(ASTSource(fn, _signature(fn, case.dtype, constexprs), constexprs),
                                  target=GPUTarget("cuda", case.cc, 32),
                                  options={"num_warps": warps, "num_stages": stages})
    except Exception as error:  # a compile error is a failed check, reported in one line
        first = str(error).strip().splitlines()
        return Outcome(case.label(), False, f"compile error: {first[-1] if first else error!r}",
                       time.perf_counter() - start)
    shared = int(compiled.metadata.shared)
    limit = SHARED_LIMITS[case.cc]
    if shared > limit:
        return Outcome(case.label(), False, f"shared memory {shared} B > sm_{case.cc} limit {limit} B "
                       f"(prune this config for the target)", time.perf_counter() - start, shared)
    detail = f"shared {shared} B"
    if case.cc >= 90 and case.dtype != "fp32":
        detail += ", wgmma" if "wgmma" in compiled.asm["ptx"] else ", no wgmma"
    return Outcome(case.label(), True, detail, time.perf_counter() - start, shared)


def smoke_cases(targets=TARGETS) -> list[TritonCase]:
    """The pytest (CI) matrix: per target and kernel, the largest and the smallest kept config at
    bf16 D=64, plus the heaviest corners on the smallest config (fp32 IEEE dots + JVP, fp16 D=128
    + JVP, D=16). `triton_cases()` is every kept config; `--full` the whole cross product."""
    picked = []
    for cc in targets:
        for kernel in ("fwd", "bwd_kv", "bwd_q"):
            cases = [c for c in triton_cases(False, (cc,)) if c.kernel == kernel]
            grid = [c for c in cases if (c.dtype, c.head_dim, c.jvp) == ("bf16", 64, False)]
            size = lambda c: c.config[0] * c.config[1] * c.config[3]  # noqa: E731
            picked += [max(grid, key=size), min(grid, key=size)]
            picked += [c for c in cases if (c.dtype, c.head_dim, c.jvp) != ("bf16", 64, False)]
    return list(dict.fromkeys(picked))


def triton_cases(full: bool = False, targets=TARGETS) -> list[TritonCase]:
    """Every kernel x every config kept for the target. --full: x every dtype x head dim x JVP.

    The CI matrix takes, per kernel and kept config, the case with the largest tiles in 16-bit
    (bf16, D=64; the dtype-independent code paths) and adds, on the smallest config, the
    heaviest corners: fp32 (IEEE dots) and fp16 at D=128 with JVP, D=16 without.
    """
    from kernels.attention_configs import CONFIG_TUPLES, KERNELS, SHARED_LIMITS, configs_for, make_configs

    configs = make_configs(CONFIG_TUPLES, interpret=False)
    cases = []
    for cc in targets:
        for kernel in KERNELS:
            if full:
                combos = [(d, h, j) for d in DTYPES for h in HEAD_DIMS for j in (False, True)]
            else:
                combos = [("bf16", 64, False)]
            for dtype, head_dim, jvp in combos:
                kept = configs_for(kernel, head_dim=head_dim, elt_bytes=_ELT_BYTES[dtype], jvp=jvp,
                                   limit=SHARED_LIMITS[cc], configs=configs)
                for cfg in kept:
                    cases.append(TritonCase(kernel, (cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"],
                                                     cfg.num_warps, cfg.num_stages),
                                            dtype, head_dim, jvp, cc))
            if not full:
                small = (64, 32, 4, 2)
                for dtype, head_dim, jvp in (("fp32", 64, True), ("fp16", 128, True), ("fp16", 16, False)):
                    cases.append(TritonCase(kernel, small, dtype, head_dim, jvp, cc))
    return cases


# ----------------------------------------------------------------------------- CUDA (nvcc)
def find_nvcc() -> str | None:
    """nvcc from $FASTVIT_NVCC, the pip package nvidia-cuda-nvcc, $CUDA_HOME, or PATH."""
    if os.environ.get("FASTVIT_NVCC"):
        return os.environ["FASTVIT_NVCC"]
    try:
        import nvidia
        for base in getattr(nvidia, "__path__", []):
            for hit in sorted(glob.glob(os.path.join(base, "*", "bin", "nvcc"))):
                return hit
    except ImportError:
        pass
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def _cuda_include_dirs(nvcc: str) -> list[str]:
    """Torch headers + the CUDA runtime/cccl headers next to nvcc (pip wheels split them)."""
    import sysconfig

    from torch.utils import cpp_extension

    dirs = cpp_extension.include_paths() + [sysconfig.get_paths()["include"]]
    roots = [Path(nvcc).resolve().parents[1]]
    try:  # pip wheels: nvidia/cu13/{bin,include} from nvidia-cuda-nvcc, -runtime, -cccl
        import nvidia
        roots += [p for base in getattr(nvidia, "__path__", []) for p in Path(base).glob("*")]
    except ImportError:
        pass
    for root in roots:
        dirs += [str(p) for p in (root / "include", root / "include" / "cccl") if p.is_dir()]
    return list(dict.fromkeys(dirs))


SPILL_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
REG_RE = re.compile(r"Used (\d+) registers")


def compile_cuda(source: str, cc: int, nvcc: str, out_dir: str) -> Outcome:
    """nvcc -c for sm_<cc>; ok when it compiles and ptxas reports no spill store/load."""
    start = time.perf_counter()
    obj = os.path.join(out_dir, f"{Path(source).stem}_sm{cc}.o")
    cmd = [nvcc, "-c", source, "-o", obj, f"-gencode=arch=compute_{cc},code=sm_{cc}",
           "-std=c++20", "-O3", "--use_fast_math", "-Xptxas", "-v", "-DFASTVIT_WITH_CUDA",
           "-DTORCH_EXTENSION_NAME=fastvit_analysis_compile_check", "-D_GLIBCXX_USE_CXX11_ABI=1",
           "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC",
           f"-I{ROOT / 'csrc'}", *[f"-I{d}" for d in _cuda_include_dirs(nvcc)]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    label = f"{Path(source).name} sm_{cc}"
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        errors = [line for line in log.splitlines() if "error" in line.lower()]
        return Outcome(label, False, f"nvcc error: {(errors or log.splitlines() or ['?'])[0].strip()}",
                       seconds)
    spills = [(int(a), int(b)) for a, b in SPILL_RE.findall(log)]
    if not spills:
        return Outcome(label, False, "ptxas printed no resource usage (was -Xptxas -v ignored?)", seconds)
    bad = [s for s in spills if s != (0, 0)]
    regs = sorted({int(r) for r in REG_RE.findall(log)})
    if bad:
        return Outcome(label, False, f"register spills: {bad[0][0]} B stores, {bad[0][1]} B loads", seconds)
    return Outcome(label, True, f"{len(spills)} kernels, registers {regs[0]}-{regs[-1]}, no spills",
                   seconds)


def cuda_sources() -> list[str]:
    return sorted(glob.glob(str(ROOT / "csrc" / "ops" / "cuda" / "*.cu")))


# ----------------------------------------------------------------------------- driver
def _init_worker(cache: str) -> None:
    os.environ["TRITON_CACHE_DIR"] = cache
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, str(ROOT))


def run_checks(*, full: bool = False, jobs: int = 2, targets=TARGETS, triton: bool = True,
               cuda: bool = True, cases=None, progress: bool = False) -> list[Outcome]:
    """Run the checks in `jobs` worker processes with a fresh, deleted-afterwards Triton cache."""
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="fastvit-compile-") as tmp:
        cache = os.path.join(tmp, "triton-cache")
        os.makedirs(cache)
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(cache,)) as pool:
            futures = []
            if cuda:
                nvcc = find_nvcc()
                if nvcc is None:
                    outcomes.append(Outcome("nvcc", False, "nvcc not found (pip install nvidia-cuda-nvcc)", 0.0))
                else:
                    futures += [pool.submit(compile_cuda, src, cc, nvcc, tmp)
                                for src in cuda_sources() for cc in targets]
            if triton:
                todo = cases if cases is not None else triton_cases(full, targets)
                # Longest first (JVP, big tiles) so two workers finish together.
                todo = sorted(todo, key=lambda c: -(c.config[0] * c.config[1] * (2 if c.jvp else 1)
                                                    * c.head_dim))
                futures += [pool.submit(compile_triton, case) for case in todo]
            for future in as_completed(futures):
                outcomes.append(future.result())
                if progress:
                    o = outcomes[-1]
                    print(f"{'ok  ' if o.ok else 'FAIL'} {o.label}: {o.detail} ({o.seconds:.1f} s)", flush=True)
    return outcomes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.compile_checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="every dtype x head dim x JVP (slow)")
    parser.add_argument("--smoke", action="store_true", help="the reduced matrix pytest runs in CI")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--targets", default=",".join(map(str, TARGETS)), help="e.g. 80,90")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--no-triton", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    targets = tuple(int(t) for t in args.targets.split(","))
    start = time.perf_counter()
    cases = smoke_cases(targets) if args.smoke else None
    outcomes = run_checks(full=args.full, jobs=args.jobs, targets=targets, cases=cases,
                          triton=not args.no_triton, cuda=not args.no_cuda, progress=args.verbose)
    failed = [o for o in outcomes if not o.ok]
    for o in failed if not args.verbose else []:
        print(f"FAIL {o.label}: {o.detail} ({o.seconds:.1f} s)")
    print(f"compile checks: {len(outcomes) - len(failed)}/{len(outcomes)} passed in "
          f"{time.perf_counter() - start:.0f} s wall ({args.jobs} workers)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

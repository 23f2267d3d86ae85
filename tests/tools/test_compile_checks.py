"""Per-target config pruning (pure Python) and the ahead-of-time compile checks (need nvcc /
triton's CUDA backend; they compile, never launch, so no GPU is needed)."""
import os

import pytest

from kernels import attention_configs as ac

triton = pytest.importorskip("triton")
GPU_CONFIGS = ac.make_configs(ac.CONFIG_TUPLES, interpret=False)  # the list a GPU run tunes over



def test_estimate_counts_tiles_by_hand():
    # fwd, 64x32 tiles, D=64, fp16, 2 stages: Q + 2 x (K + V) + P scratch
    assert ac.shared_bytes_estimate("fwd", 64, 32, 2, 64, 2, False) == 2 * (64 * 64 + 2 * 2 * 32 * 64 + 64 * 32)
    # JVP doubles every term
    assert ac.shared_bytes_estimate("fwd", 64, 32, 2, 64, 2, True) == 2 * ac.shared_bytes_estimate(
        "fwd", 64, 32, 2, 64, 2, False)
    with pytest.raises(ValueError, match="kernel must be one of"):
        ac.shared_bytes_estimate("bwd", 64, 32, 2, 64, 2, False)


def test_hopper_tiles_kept_on_sm90_and_pruned_where_they_do_not_fit():
    hopper = [c for c in GPU_CONFIGS if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages)
              == (128, 128, 8, 3)]
    assert hopper, "the autotune list must include a 128x128, 8-warp, 3-stage config"
    kept90 = ac.configs_for("fwd", head_dim=64, elt_bytes=2, jvp=False, limit=ac.SHARED_LIMITS[90],
                            configs=GPU_CONFIGS)
    assert hopper[0] in kept90
    # the measured case: bwd_kv at D=128 with 128x32 tiles needs 290 KB > 227 KB
    big = [c for c in GPU_CONFIGS if c.kwargs == {"BLOCK_M": 128, "BLOCK_N": 32}]
    for limit in (ac.SHARED_LIMITS[80], ac.SHARED_LIMITS[90]):
        kept = ac.configs_for("bwd_kv", head_dim=128, elt_bytes=2, jvp=True, limit=limit, configs=GPU_CONFIGS)
        assert not set(big) & set(kept)
        assert kept  # never empty
    # A100 keeps fewer configs than H100 for the heavy case, and each kept one fits by estimate
    k80 = ac.configs_for("bwd_q", head_dim=128, elt_bytes=4, jvp=True, limit=ac.SHARED_LIMITS[80],
                           configs=GPU_CONFIGS)
    k90 = ac.configs_for("bwd_q", head_dim=128, elt_bytes=4, jvp=True, limit=ac.SHARED_LIMITS[90],
                           configs=GPU_CONFIGS)
    assert set(k80) <= set(k90)


def test_pruner_reads_head_dim_dtype_and_jvp(monkeypatch):
    import torch

    monkeypatch.setattr(ac, "INTERPRET", False)
    monkeypatch.setattr(ac, "device_shared_limit", lambda device: ac.SHARED_LIMITS[90])
    prune = ac.pruner("bwd_kv")
    q16, q32 = torch.empty(1, dtype=torch.float16), torch.empty(1, dtype=torch.float32)
    light = prune(GPU_CONFIGS, {"Q": q16}, HEAD_DIM=32, JVP=False)
    heavy = prune(GPU_CONFIGS, {"Q": q32}, HEAD_DIM=128, JVP=True)
    assert len(heavy) < len(light) <= len(GPU_CONFIGS)


def _have_triton_cuda_backend():
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
        return True
    except Exception:
        return False


def _run_compile_checks(*flags: str) -> None:
    """tools.compile_checks in a fresh process: conftest sets TRITON_INTERPRET=1 for this session, and
    Triton reads it at import, so an in-process AOT compile would go through the interpreter."""
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "tools.compile_checks", *flags], env=env, text=True,
                          capture_output=True, cwd=Path(__file__).resolve().parents[2], timeout=3000)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.mark.skipif(os.environ.get("FASTVIT_COMPILE_CHECKS", "0") not in ("1", "all"),
                    reason="AOT compile checks run when FASTVIT_COMPILE_CHECKS=1 "
                           "(.ci/run sets it; 'all' = every config)")
@pytest.mark.skipif(not _have_triton_cuda_backend(), reason="triton has no CUDA backend installed")
def test_triton_kernels_compile_aot_within_shared_memory():
    _run_compile_checks("--no-cuda", *([] if os.environ["FASTVIT_COMPILE_CHECKS"] == "all" else ["--smoke"]))


@pytest.mark.skipif(os.environ.get("FASTVIT_COMPILE_CHECKS", "0") not in ("1", "all"),
                    reason="AOT compile checks run when FASTVIT_COMPILE_CHECKS=1 "
                           "(.ci/run sets it; 'all' = every config)")
def test_cuda_sources_compile_without_spills():
    from tools import compile_checks as cc

    if cc.find_nvcc() is None:
        pytest.skip("nvcc not found (pip install nvidia-cuda-nvcc nvidia-cuda-cccl)")
    _run_compile_checks("--no-triton")


def test_smoke_matrix_covers_every_kernel_target_and_corner():
    from tools import compile_checks as cc

    cases = cc.smoke_cases()
    assert {(c.kernel, c.cc) for c in cases} == {(k, t) for k in ac.KERNELS for t in cc.TARGETS}
    assert {c.dtype for c in cases} == {"fp16", "bf16", "fp32"} and {True, False} == {c.jvp for c in cases}
    assert {16, 64, 128} <= {c.head_dim for c in cases}
    assert (128, 128, 8, 3) in {c.config for c in cases if c.cc == 90}
    assert len(cases) <= 40


def test_every_kernel_autotunes_over_the_config_list_with_its_pruner():
    from kernels import attention_bwd, attention_fwd

    for tuned, name in ((attention_fwd.attention_fwd_kernel, "fwd"), (attention_bwd.bwd_kv_kernel, "bwd_kv"),
                        (attention_bwd.bwd_q_kernel, "bwd_q")):
        assert tuned.early_config_prune.__name__ == f"early_config_prune_{name}"
        assert [c.kwargs for c in tuned.configs] == [c.kwargs for c in ac.CONFIGS]

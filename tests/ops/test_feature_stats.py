"""Feature-statistics ops (relative log amplitude, feature-map variance) against the paper's
eager pipeline and torch.var, for both backends, both layouts, fp32/fp16/bf16, and bad input.

The compiled backend is skipped when the extension cannot be built, except under
FASTVIT_REQUIRE_EXTENSION=1 (CI), where that is a failure.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import pytest
import torch

import fastvit_analysis as fa
from fastvit_analysis.ops import _extension, diag_log_amplitude, feature_moments
from fastvit_analysis.ops import feature_stats as ops_impl

REQUIRE_EXTENSION = os.environ.get("FASTVIT_REQUIRE_EXTENSION", "0") == "1"
SIZES = [1, 2, 3, 7, 8, 14, 16, 32, 56]


def _require_compiled():
    if not _extension.load_extension():
        message = f"fastvit_analysis extension unavailable: {_extension.extension_error()!r}"
        if REQUIRE_EXTENSION:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["eager", "compiled"])
def backend(request):
    if request.param == "compiled":
        _require_compiled()
    return request.param


# ----------------------------------------------------------------- references

def paper_log_amplitude(z: torch.Tensor) -> torch.Tensor:
    """The paper's pipeline (how-do-vits-work, fourier_analysis): a(k) before subtracting a(0)."""
    _, _, h, w = z.shape
    f = torch.fft.fft2(z)
    f = torch.log(f.abs() + 1e-6)
    f = torch.roll(f, shifts=(int(h / 2), int(w / 2)), dims=(2, 3)).mean(dim=(0, 1))
    return f.diag()[int(h / 2):]


def paper_relative_log_amplitude(z: torch.Tensor) -> torch.Tensor:
    a = paper_log_amplitude(z)
    return a - a[0]


def tokens_to_maps(t: torch.Tensor, prefix: int) -> torch.Tensor:
    """The paper's rearrange 'b (h w) c -> b c h w' after dropping prefix tokens."""
    b, tokens, c = t.shape
    n = math.isqrt(tokens - prefix)
    return t[:, prefix:].transpose(1, 2).reshape(b, c, n, n)


def assert_log_amplitude_matches(z_maps_exact, a, delta, rtol=1e-5):
    """a(k) to `rtol`; Δ = a − a(0) is a difference of O(1) numbers, so its error is judged
    against |a|, not against Δ itself (Δ ≈ 0 for white noise)."""
    ref_a = paper_log_amplitude(z_maps_exact)
    ref_delta = ref_a - ref_a[0]
    torch.testing.assert_close(a.double(), ref_a, rtol=rtol, atol=rtol * 1e-2)
    torch.testing.assert_close(delta.double(), ref_delta, rtol=rtol, atol=rtol * float(ref_a.abs().max()))
    assert delta[0].item() == 0.0
    assert delta.shape == (math.ceil(z_maps_exact.shape[-1] / 2),)


def structured_maps(shape, dtype=torch.float32):
    """Smooth-plus-noise maps with per-channel offsets: a spectrum that is not flat."""
    b, c, h, w = shape
    z = torch.randn(b, c, h, w, dtype=torch.float64)
    z = z + 0.5 * z.cumsum(-1).cumsum(-2) / max(h, 1) + torch.randn(1, c, 1, 1, dtype=torch.float64)
    return z.to(dtype)


# ----------------------------------------------------------------- relative log amplitude

@pytest.mark.parametrize("n", SIZES)
def test_relative_log_amplitude_matches_paper_pipeline_fp32(n, backend):
    z = structured_maps((3, 5, n, n))  # B*C = 15, odd
    a = diag_log_amplitude(z, backend=backend)
    delta = fa.relative_log_amplitude(z, backend=backend)
    assert a.dtype == torch.float32 and delta.dtype == torch.float32
    assert_log_amplitude_matches(z.double(), a, delta)


@pytest.mark.parametrize("n", [8, 16, 32, 15])  # the CPU kernel has register-blocked paths for n = 8, 16, 32
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_per_map_log_amplitude_against_torch_fft(n, dtype, backend):
    z = structured_maps((2, 3, n, n)).to(dtype)
    per_map = diag_log_amplitude(z, reduce=False, backend=backend)
    exact = z.double()  # the same rounded inputs, in double
    diag = torch.fft.fft2(exact).diagonal(dim1=-2, dim2=-1)[..., : (n + 1) // 2]
    ref = torch.log(diag.abs() + 1e-6)
    assert per_map.shape == (2, 3, (n + 1) // 2)
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(per_map.double(), ref, rtol=rtol, atol=rtol * float(ref.abs().max()))
    # a map inside a larger one (row stride != n, unit W stride)
    big = structured_maps((2, 3, n + 5, n + 3)).to(dtype)
    view = big[:, :, 2:2 + n, 1:1 + n]
    ref_view = torch.log(torch.fft.fft2(view.double()).diagonal(dim1=-2, dim2=-1)[..., : (n + 1) // 2].abs() + 1e-6)
    torch.testing.assert_close(diag_log_amplitude(view, reduce=False, backend=backend).double(), ref_view,
                               rtol=rtol, atol=rtol * float(ref_view.abs().max()))


@pytest.mark.parametrize("n", [1, 3, 7, 14, 16])
@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_relative_log_amplitude_tokens_with_prefix(n, prefix, backend):
    t = torch.randn(3, prefix + n * n, 7)
    t[:, :prefix] = 1e3  # prefix tokens must not leak into the result
    a = diag_log_amplitude(t, prefix, backend=backend)
    delta = fa.relative_log_amplitude(t, num_prefix_tokens=prefix, backend=backend)
    assert_log_amplitude_matches(tokens_to_maps(t, prefix).double(), a, delta)


@pytest.mark.parametrize("layout", ["channels_last", "transposed_hw", "channel_slice", "strided_w", "batch_slice"])
@pytest.mark.parametrize("n", [7, 16, 32])
def test_relative_log_amplitude_non_contiguous(layout, n, backend):
    base = structured_maps((4, 10, n, 2 * n))
    views = {
        "channels_last": base[..., :n].contiguous().to(memory_format=torch.channels_last),
        "transposed_hw": base[..., :n].transpose(2, 3),
        "channel_slice": base[:, ::3, :, :n],
        "strided_w": base[:, :, :, ::2],  # neither W nor C has unit stride
        "batch_slice": base[1:4, :, :, n:],
    }
    z = views[layout]
    assert not z.is_contiguous()
    a = diag_log_amplitude(z, backend=backend)
    delta = fa.relative_log_amplitude(z, backend=backend)
    assert_log_amplitude_matches(z.double(), a, delta)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "tokens"])
def test_relative_log_amplitude_half_precision(dtype, layout, backend):
    z32 = structured_maps((3, 5, 14, 14))
    if layout == "tokens":
        z = torch.cat([torch.randn(3, 1, 5), z32.flatten(2).transpose(1, 2)], 1).to(dtype)
        maps, prefix = tokens_to_maps(z, 1), 1
    else:
        z = z32.to(dtype)
        z = z.to(memory_format=torch.channels_last) if layout == "channels_last" else z
        maps, prefix = z, 0
    a = diag_log_amplitude(z, prefix, backend=backend)
    delta = fa.relative_log_amplitude(z, num_prefix_tokens=prefix, backend=backend)
    assert a.dtype == torch.float32
    # Accumulation is in float32, so against the exact spectrum of the *same* rounded inputs the
    # result is fp32-accurate; the 1e-5 bound holds.
    assert_log_amplitude_matches(maps.double(), a, delta)
    # Against the fp32 original only the input rounding separates them (unit roundoff
    # 2^-11 for fp16, 2^-8 for bf16; log damps it to about that absolute size).
    tol = 2e-3 if dtype == torch.float16 else 1e-2
    torch.testing.assert_close(a.double(), paper_log_amplitude(z32.double()), rtol=tol, atol=tol)


def test_per_map_log_amplitude_matches_fft(backend):
    z = structured_maps((2, 3, 9, 9))
    per_map = diag_log_amplitude(z, reduce=False, backend=backend)
    spectrum = torch.log(torch.fft.fft2(z.double()).abs() + 1e-6)
    ref = torch.diagonal(spectrum, dim1=2, dim2=3)[..., :5]
    assert per_map.shape == (2, 3, 5)
    torch.testing.assert_close(per_map.double(), ref, rtol=1e-5, atol=1e-5)
    delta = fa.relative_log_amplitude(z, per_map=True, backend=backend)
    torch.testing.assert_close(delta.double(), ref - ref[..., :1], rtol=1e-5, atol=1e-5)


def test_float64_input_stays_float64(backend):
    z = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    a = diag_log_amplitude(z, backend=backend)
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, paper_log_amplitude(z), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------- variance

@pytest.mark.parametrize("n", SIZES)
def test_feature_map_variance_matches_torch_var(n, backend):
    z = structured_maps((3, 5, n, n)) * 3 + 100  # large mean: no cancellation allowed
    v = fa.feature_map_variance(z, backend=backend)
    per_map = fa.feature_map_variance(z, per_map=True, backend=backend)
    mean, var = feature_moments(z, backend=backend)
    ref_var = z.double().var(dim=(2, 3))
    assert v.shape == () and per_map.shape == (3, 5) and v.dtype == torch.float32
    torch.testing.assert_close(mean.double(), z.double().mean(dim=(2, 3)), rtol=1e-6, atol=0)
    if n == 1:  # one position: the unbiased variance is undefined, as in torch.var
        assert torch.isnan(per_map).all() and torch.isnan(v)
        return
    torch.testing.assert_close(per_map.double(), ref_var, rtol=1e-5, atol=0)
    torch.testing.assert_close(v.double(), ref_var.mean(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_feature_map_variance_tokens(prefix, backend):
    t = torch.randn(3, prefix + 49, 9) * 2 - 5
    t[:, :prefix] = 1e4
    ref = t[:, prefix:].double().var(dim=1)
    torch.testing.assert_close(fa.feature_map_variance(t, prefix, per_map=True, backend=backend).double(), ref,
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(fa.feature_map_variance(t, prefix, backend=backend).double(), ref.mean(),
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("layout", ["channels_last", "transposed_hw", "channel_slice", "strided_w"])
def test_feature_map_variance_non_contiguous(layout, backend):
    base = structured_maps((4, 10, 8, 16)) + 3
    z = {
        "channels_last": base[..., :8].contiguous().to(memory_format=torch.channels_last),
        "transposed_hw": base[..., :8].transpose(2, 3),
        "channel_slice": base[:, 1::3, :, 8:],
        "strided_w": base[:, :, :, ::2],
    }[layout]
    torch.testing.assert_close(fa.feature_map_variance(z, per_map=True, backend=backend).double(),
                               z.double().var(dim=(2, 3)), rtol=1e-5, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_feature_map_variance_half_precision(dtype, backend):
    z = (structured_maps((3, 5, 8, 8)) + 2).to(dtype)
    for x in (z, z.to(memory_format=torch.channels_last)):
        v = fa.feature_map_variance(x, per_map=True, backend=backend)
        assert v.dtype == torch.float32
        # fp32 accumulation of the same rounded values: fp32 accuracy.
        torch.testing.assert_close(v.double(), x.double().var(dim=(2, 3)), rtol=1e-5, atol=0)


# ----------------------------------------------------------------- compiled path

def test_op_is_registered_and_used_when_built(monkeypatch):
    _require_compiled()
    for op in ("diag_log_amplitude", "feature_moments"):
        assert hasattr(torch.ops.fastvit_analysis, op)
        assert _extension.has_kernel_for(op, torch.device("cpu"))
    assert _extension.extension_source() is not None

    def no_eager(*args, **kwargs):
        raise AssertionError("auto backend fell back to eager although the extension is built")

    monkeypatch.setattr(ops_impl, "_diag_log_amplitude_eager", no_eager)
    monkeypatch.setattr(ops_impl, "_feature_moments_eager", no_eager)
    z = torch.randn(2, 3, 5, 5)
    fa.relative_log_amplitude(z, backend="auto")
    fa.feature_map_variance(z, backend="auto")
    monkeypatch.setenv("FASTVIT_OPS_BACKEND", "compiled")
    fa.relative_log_amplitude(z)


@pytest.mark.parametrize("isa", ["best", "baseline"])  # the CPU kernels exist for AVX2+FMA and baseline x86-64
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "tokens", "strided"])
def test_compiled_and_eager_agree(layout, isa, monkeypatch):
    _require_compiled()
    monkeypatch.setenv("FASTVIT_CPU_ISA", isa)
    if layout == "tokens":
        z, prefix = torch.randn(5, 2 + 144, 33), 2
    else:
        z, prefix = structured_maps((5, 33, 12, 12)), 0
        if layout == "channels_last":
            z = z.to(memory_format=torch.channels_last)
        elif layout == "strided":
            z = structured_maps((5, 33, 12, 24))[..., ::2]
    for reduce in (True, False):
        compiled = diag_log_amplitude(z, prefix, reduce=reduce, backend="compiled")
        eager = diag_log_amplitude(z, prefix, reduce=reduce, backend="eager")
        if reduce:
            torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
        else:
            # Per map, log(|F| + 1e-6) amplifies rounding where |F| is tiny, so compare |F| itself,
            # to fp32 rounding of a sum of n*n terms relative to the largest amplitude.
            amp_c, amp_e = compiled.exp(), eager.exp()
            torch.testing.assert_close(amp_c, amp_e, rtol=1e-5, atol=1e-6 * float(amp_e.max()))
    for c, e in zip(feature_moments(z, prefix, backend="compiled"), feature_moments(z, prefix, backend="eager")):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6)


def test_compiled_ops_pass_opcheck_and_trace_under_torch_compile():
    _require_compiled()
    maps = torch.randn(2, 3, 6, 6)
    torch.library.opcheck(torch.ops.fastvit_analysis.diag_log_amplitude.default, (maps, True))
    torch.library.opcheck(torch.ops.fastvit_analysis.diag_log_amplitude.default, (maps, False))
    torch.library.opcheck(torch.ops.fastvit_analysis.feature_moments.default, (maps,))

    def stats(z):
        return fa.relative_log_amplitude(z, backend="compiled"), fa.feature_map_variance(z, backend="compiled")

    compiled = torch.compile(stats, backend="aot_eager", fullgraph=True)
    for got, want in zip(compiled(maps), stats(maps)):
        torch.testing.assert_close(got, want)


def test_auto_falls_back_to_eager_with_one_warning(monkeypatch):
    monkeypatch.setattr(_extension, "_state", {"tried": True, "ok": False, "error": RuntimeError("no compiler"),
                                               "devices": frozenset(), "source": None, "warned": False})
    z = torch.randn(2, 3, 4, 4)
    with pytest.warns(RuntimeWarning, match="no compiler"):
        a = fa.relative_log_amplitude(z, backend="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fa.feature_map_variance(z, backend="auto")  # warned once already
    torch.testing.assert_close(a, fa.relative_log_amplitude(z, backend="eager"))
    with pytest.raises(_extension.ExtensionUnavailable, match="no compiler"):
        fa.relative_log_amplitude(z, backend="compiled")


def test_import_compiles_nothing():
    code = ("import sys, fastvit_analysis, fastvit_analysis.ops as ops; "
            "fastvit_analysis.relative_log_amplitude; fastvit_analysis.feature_map_variance; "
            "from fastvit_analysis.ops import _extension; "
            "assert not _extension._state['tried'], 'extension loaded at import'; "
            "assert 'fastvit_analysis._C' not in sys.modules")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# ----------------------------------------------------------------- bad input and non-finite values

BAD_INPUTS = [
    (lambda: torch.randn(2, 3, 4, 5), 0, ValueError, r"square maps \(H == W\), got H=4, W=5"),
    (lambda: torch.randn(2, 1 + 15, 8), 1, ValueError, r"15 tokens after removing num_prefix_tokens=1.*not a square"),
    (lambda: torch.randn(2, 16, 8), 3, ValueError, r"13 tokens .* not a square"),
    (lambda: torch.randn(4, 4), 0, ValueError, r"z must be 4-D \(B, C, H, W\).*or 3-D.*got 2-D"),
    (lambda: torch.randn(1, 2, 3, 4, 4), 0, ValueError, r"z must be 4-D.*got 5-D"),
    (lambda: torch.randn(0, 3, 4, 4), 0, ValueError, r"z is empty"),
    (lambda: torch.randn(2, 0, 4, 4), 0, ValueError, r"z is empty"),
    (lambda: torch.randn(2, 3, 8), 3, ValueError, r"z is empty after removing 3 prefix tokens"),
    (lambda: torch.randn(2, 3, 8), 4, ValueError, r"num_prefix_tokens=4 exceeds the 3 tokens"),
    (lambda: torch.randn(2, 5, 8), -1, ValueError, r"num_prefix_tokens must be >= 0"),
    (lambda: torch.randn(2, 3, 4, 4), 1, ValueError, r"num_prefix_tokens applies to token inputs"),
    (lambda: torch.randint(0, 9, (2, 3, 4, 4)), 0, ValueError, r"z must be a floating-point tensor.*torch.int64"),
    (lambda: torch.ones(2, 3, 4, 4, dtype=torch.bool), 0, ValueError, r"floating-point.*torch.bool"),
    (lambda: torch.randn(2, 3, 4, 4, dtype=torch.complex64), 0, ValueError, r"floating-point.*complex64"),
    (lambda: [[1.0]], 0, TypeError, r"z must be a torch.Tensor, got list"),
    (lambda: torch.randn(2, 5, 8), 1.0, TypeError, r"num_prefix_tokens must be an int, got float"),
]


@pytest.mark.parametrize("make, prefix, error, match", BAD_INPUTS)
@pytest.mark.parametrize("fn", [fa.relative_log_amplitude, fa.feature_map_variance])
def test_bad_input_names_the_argument(fn, make, prefix, error, match, backend):
    with pytest.raises(error, match=match):
        fn(make(), prefix, backend=backend)


def test_bad_backend_is_rejected(monkeypatch):
    z = torch.randn(1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"backend must be one of .*'fast'"):
        fa.relative_log_amplitude(z, backend="fast")
    monkeypatch.setenv("FASTVIT_OPS_BACKEND", "gpu")
    with pytest.raises(ValueError, match=r"\$FASTVIT_OPS_BACKEND must be one of .*'gpu'"):
        fa.feature_map_variance(z)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "tokens"])
def test_non_finite_input_gives_non_finite_output(bad, layout, backend):
    z = torch.randn(2, 3, 6, 6)
    z[1, 2, 3, 4] = bad
    if layout == "channels_last":
        z = z.to(memory_format=torch.channels_last)
    prefix = 0
    if layout == "tokens":
        z, prefix = torch.cat([torch.zeros(2, 1, 3), z.flatten(2).transpose(1, 2)], 1), 1
    per_map = diag_log_amplitude(z, prefix, reduce=False, backend=backend)
    assert not torch.isfinite(per_map[1, 2]).any()
    assert torch.isfinite(per_map[0]).all() and torch.isfinite(per_map[1, :2]).all()
    assert not torch.isfinite(diag_log_amplitude(z, prefix, backend=backend)).any()
    mean, var = feature_moments(z, prefix, backend=backend)
    assert not torch.isfinite(var[1, 2]) and not torch.isfinite(mean[1, 2])
    assert torch.isfinite(var[0]).all() and torch.isfinite(var[1, :2]).all()
    assert not torch.isfinite(fa.feature_map_variance(z, prefix, backend=backend))

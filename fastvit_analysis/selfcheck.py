"""selfcheck: verify an install on this machine, every available backend against its reference.

Backends: eager torch (always), the compiled C++ extension on CPU, its CUDA kernels, Triton
(on a GPU, or its interpreter when TRITON_INTERPRET=1; on a CPU machine the Triton checks run in
a subprocess under the interpreter at tiny shapes). Checks:

* feature statistics (diag_log_amplitude, feature_moments) of every backend against torch.fft /
  torch.var_mean in float64, NCHW, channels_last and token layouts, fp32/fp16/bf16 inputs;
* fused attention (composite torch path and Triton) against math SDPA in float64: forward,
  backward, JVP, double backward, vmap over tangents, and a fully-masked row (output 0, finite
  gradients);
* one Hessian-vector product through a small timm ViT with patched attention against the same
  model on math SDPA.

Example (the feature-statistics and attention checks; without Triton and the ViT HVP, to be quick):
    >>> result = selfcheck(triton=False, hvp=False)
    >>> result.ok
    True
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Callable

import torch

_TOL = {torch.float64: 1e-9, torch.float32: 2e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}


@dataclasses.dataclass
class CheckRow:
    backend: str
    check: str
    case: str
    error: float          # max |got - ref| / max(1, max |ref|); nan when the check raised
    tol: float
    ok: bool
    seconds: float
    detail: str = ""


@dataclasses.dataclass
class SelfCheckResult:
    backends: dict        # name -> "yes" / "no (why)"
    rows: list

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "backends": self.backends, "rows": [dataclasses.asdict(r) for r in self.rows]}

    def table(self) -> str:
        lines = ["backends:"] + [f"  {k:<22} {v}" for k, v in self.backends.items()]
        lines.append(f"{'backend':<18} {'check':<22} {'case':<30} {'error':>9} {'tol':>8}  result")
        for r in self.rows:
            status = "ok" if r.ok else f"FAIL {r.detail}".strip()
            lines.append(f"{r.backend:<18} {r.check:<22} {r.case:<30} {r.error:9.2e} {r.tol:8.1e}  {status}")
        failed = sum(not r.ok for r in self.rows)
        lines.append(f"selfcheck: {len(self.rows) - failed}/{len(self.rows)} checks passed")
        return "\n".join(lines)


def _rel_error(got, ref) -> float:
    if isinstance(got, (tuple, list)):
        return max(_rel_error(g, r) for g, r in zip(got, ref))
    got, ref = got.double(), ref.double()
    if got.shape != ref.shape:
        return float("inf")
    diff = (got - ref).abs()
    diff = torch.where(torch.isnan(got) != torch.isnan(ref), torch.inf, diff.nan_to_num(0.0))
    return float(diff.max()) / max(1.0, float(ref.abs().nan_to_num(0.0).max()))


def _run(rows: list, backend: str, check: str, case: str, tol: float, fn: Callable) -> None:
    """fn() -> (got, ref) or an error float; any exception is a failed row, never a crash."""
    start = time.perf_counter()
    try:
        out = fn()
        error = out if isinstance(out, float) else _rel_error(*out)
        ok, detail = error <= tol, ""
    except Exception as exc:  # the table reports it; selfcheck must finish
        first_line = str(exc).splitlines()[0][:120] if str(exc) else ""
        error, ok, detail = float("nan"), False, f"{type(exc).__name__}: {first_line}"
    rows.append(CheckRow(backend, check, case, error, tol, bool(ok), time.perf_counter() - start, detail))


# ----------------------------------------------------------------------------- backends
def available_backends() -> dict:
    from .ops import extension_error, has_kernel_for, load_extension

    found = {"eager": "yes"}
    loaded = load_extension()
    why = "" if loaded else f" ({type(extension_error()).__name__})"
    found["compiled CPU ext"] = "yes" if loaded and has_kernel_for("feature_moments", torch.device("cpu")) \
        else f"no{why}"
    if not torch.cuda.is_available():
        found["CUDA ext"] = "no (no CUDA device)"
    else:
        found["CUDA ext"] = "yes" if loaded and has_kernel_for("feature_moments", torch.device("cuda")) \
            else "no (CPU-only build: CUDA tensors use torch)"
    try:
        import triton  # noqa: F401
        if torch.cuda.is_available():
            found["triton"] = "yes (GPU)"
        elif os.environ.get("TRITON_INTERPRET", "0") == "1":
            found["triton"] = "yes (interpreter)"
        else:
            found["triton"] = "yes (interpreter, in a subprocess)"
    except ImportError:
        found["triton"] = "no (not installed)"
    return found


# ----------------------------------------------------------------------------- feature statistics
def _fft_log_amplitude(z: torch.Tensor) -> torch.Tensor:
    n = z.shape[-1]
    spectrum = torch.fft.fft2(z.double())
    k = torch.arange((n + 1) // 2)
    return torch.log(spectrum[..., k, k].abs() + 1e-6).mean(dim=(0, 1))


def _feature_rows(rows: list, device: torch.device, backends: list) -> None:
    from .ops import diag_log_amplitude, feature_moments

    gen = torch.Generator().manual_seed(0)
    cases = [("2x3x8x8 fp32", torch.randn(2, 3, 8, 8, generator=gen), torch.float32, False),
             ("2x4x7x7 fp32 cl", torch.randn(2, 4, 7, 7, generator=gen), torch.float32, True),
             ("2x3x16x16 fp16", torch.randn(2, 3, 16, 16, generator=gen), torch.float16, False),
             ("2x3x16x16 bf16 cl", torch.randn(2, 3, 16, 16, generator=gen), torch.bfloat16, True)]
    for label, maps, dtype, channels_last in cases:
        z = maps.to(device=device, dtype=dtype)
        if channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        exact = z.double().cpu()  # the reference sees the same (rounded) values
        for backend in backends:
            _run(rows, f"{backend}/{device.type}", "diag_log_amplitude", label, 1e-3,
                 lambda: (diag_log_amplitude(z, backend=backend).cpu(), _fft_log_amplitude(exact)))
            _run(rows, f"{backend}/{device.type}", "feature_moments", label, 1e-4,
                 lambda: (tuple(t.cpu() for t in feature_moments(z, backend=backend)),
                          tuple(reversed(torch.var_mean(exact, dim=(2, 3), correction=1)))))
    tokens = torch.randn(2, 1 + 36, 5, generator=gen).to(device)
    as_maps = tokens[:, 1:].double().cpu().transpose(1, 2).reshape(2, 5, 6, 6)
    for backend in backends:
        _run(rows, f"{backend}/{device.type}", "diag_log_amplitude", "tokens 2x(1+36)x5 fp32", 1e-3,
             lambda: (diag_log_amplitude(tokens, 1, backend=backend).cpu(), _fft_log_amplitude(as_maps)))


# ----------------------------------------------------------------------------- attention
def _attention_inputs(shape, dtype, device, gen, masked_row: bool = False):
    b, h, n, d = shape
    make = lambda: torch.randn(b, h, n, d, generator=gen).to(device=device, dtype=dtype)  # noqa: E731
    q, k, v = make(), make(), make()
    bias = torch.randn(h, n, n, generator=gen).to(device=device, dtype=dtype)
    if masked_row:
        bias[:, 1, :] = float("-inf")
    return q, k, v, bias


def _attention_rows(rows: list, backend: str, device: torch.device, dtypes) -> None:
    from .attention import fused_attention, math_attention

    gen = torch.Generator().manual_seed(1)
    label = f"{backend}/{device.type}"
    for dtype in dtypes:
        tol = _TOL[dtype]
        for shape in ((1, 2, 17, 16), (2, 1, 5, 32)):
            case = f"{'x'.join(map(str, shape))} {str(dtype).replace('torch.', '')}"
            q, k, v, bias = _attention_inputs(shape, dtype, device, gen)
            ref_in = [t.double().cpu() for t in (q, k, v, bias)]
            fused = lambda q, k, v, b: fused_attention(q, k, v, attn_bias=b, backend=backend)  # noqa: E731
            ref = lambda q, k, v, b: math_attention(q, k, v, attn_bias=b)  # noqa: E731
            _run(rows, label, "forward", case, tol,
                 lambda: (fused(q, k, v, bias).cpu(), ref(*ref_in)))

            def grads(fn, inputs, w):
                inputs = [t.detach().requires_grad_() for t in inputs]
                out = fn(*inputs)
                return [g.cpu() for g in torch.autograd.grad((out * w).sum(), inputs)]
            w = torch.randn(shape, generator=gen)
            _run(rows, label, "backward", case, tol,
                 lambda: (grads(fused, (q, k, v, bias), w.to(device, dtype)), grads(ref, ref_in, w.double())))

            tangents = [torch.randn(t.shape, generator=gen) for t in (q, k, v, bias)]
            _run(rows, label, "jvp", case, tol, lambda: (
                torch.func.jvp(fused, (q, k, v, bias), tuple(t.to(device, dtype) for t in tangents))[1].cpu(),
                torch.func.jvp(ref, tuple(ref_in), tuple(t.double() for t in tangents))[1]))

            def double_backward(fn, inputs, w, t):
                inputs = [x.detach().requires_grad_() for x in inputs]
                g = torch.autograd.grad((fn(*inputs) * w).sum(), inputs, create_graph=True)
                gt = sum((gi * ti).sum() for gi, ti in zip(g, t))
                return [x.cpu() for x in torch.autograd.grad(gt, inputs)]
            _run(rows, label, "double backward", case, 10 * tol, lambda: (
                double_backward(fused, (q, k, v, bias), w.to(device, dtype), [t.to(device, dtype) for t in tangents]),
                double_backward(ref, ref_in, w.double(), [t.double() for t in tangents])))

            stacked = torch.randn(3, *shape, generator=gen)
            _run(rows, label, "vmap over tangents", case, tol, lambda: (
                torch.func.vmap(lambda tq: torch.func.jvp(lambda x: fused(x, k, v, bias), (q,), (tq,))[1])(
                    stacked.to(device, dtype)).cpu(),
                torch.stack([torch.func.jvp(lambda x: ref(x, *ref_in[1:]), (ref_in[0],), (t.double(),))[1]
                             for t in stacked])))
        # fully masked query row: output 0 and finite gradients (not NaN)
        q, k, v, bias = _attention_inputs((1, 2, 9, 16), dtype, device, gen, masked_row=True)
        _run(rows, label, "fully-masked row", f"1x2x9x16 {str(dtype).replace('torch.', '')}", tol,
             lambda: _masked_row_error(fused_attention, backend, q, k, v, bias))


def _masked_row_error(fused_attention, backend, q, k, v, bias) -> float:
    inputs = [t.detach().requires_grad_() for t in (q, k, v)]
    out = fused_attention(*inputs, attn_bias=bias, backend=backend)
    grads = torch.autograd.grad(out.float().square().sum(), inputs)
    if not all(torch.isfinite(g).all() for g in grads) or not torch.isfinite(out).all():
        return float("inf")
    return float(out[:, :, 1].abs().max())


# ----------------------------------------------------------------------------- HVP through a ViT
def _hvp_row(rows: list, device: torch.device, dtype: torch.dtype = torch.float64) -> None:
    """HVP through a patched 2-block ViT vs math SDPA; fp64 runs the composite path, fp32 on CUDA
    runs the Triton kernels (fused_attention's "auto" picks Triton for CUDA fp32)."""
    import timm

    from .attention import attention_patched

    def case():
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                                  depth=2, num_heads=2, num_classes=5).to(device=device, dtype=dtype).eval()
        x = torch.randn(3, 3, 32, 32, device=device, dtype=dtype)
        y = torch.tensor([0, 3, 1], device=device)
        params = {name: p.detach() for name, p in model.named_parameters()}
        vec = {name: torch.randn_like(p) for name, p in params.items()}

        def loss(p):
            return torch.nn.functional.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

        def hvp():
            return torch.func.jvp(torch.func.grad(loss), (params,), (vec,))[1]
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.MATH):
            ref = hvp()
        with attention_patched(model):
            got = hvp()
        return torch.cat([got[n].flatten() for n in params]).cpu(), torch.cat([ref[n].flatten() for n in params]).cpu()
    _run(rows, f"patched ViT/{device.type}", "HVP vs math SDPA", f"vit 2x32 {str(dtype)[6:]}",
         1e-8 if dtype == torch.float64 else 2e-3, case)


# ----------------------------------------------------------------------------- driver
def _triton_subprocess_rows(timeout: float = 300.0) -> list:
    """The Triton checks under TRITON_INTERPRET=1 in a fresh interpreter (the flag is read at import)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-c", "import json, fastvit_analysis.selfcheck as s; "
           "print('SELFCHECK-JSON' + json.dumps([r.__dict__ for r in s._triton_rows()]))"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("SELFCHECK-JSON"):
            return [CheckRow(**r) for r in json.loads(line[len("SELFCHECK-JSON"):])]
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return [CheckRow("triton/interpreter", "subprocess", "-", float("nan"), 0.0, False, 0.0, tail[:160])]


def _triton_rows() -> list:
    rows: list = []
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtypes = (torch.float32, torch.float16, torch.bfloat16) if device.type == "cuda" else (torch.float32,)
    _attention_rows(rows, "triton", device, dtypes)
    return rows


def _import_gpu_suite():
    """bench/ ships with the repository, not the wheel: find it next to an editable install."""
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if (root / "bench" / "gpu_suite.py").exists() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module("bench.gpu_suite")
    except ImportError as error:
        raise RuntimeError("selfcheck --bench needs the repository checkout (bench/gpu_suite.py); "
                           "run it from a clone: python -m bench.gpu_suite") from error


def selfcheck(*, triton: bool = True, hvp: bool = True, bench: bool = False,
              json_path: str | None = None, verbose: bool = False) -> SelfCheckResult:
    """Run every available backend against its reference; `.ok` is False on any mismatch.

    Args:
        triton: include the Triton attention checks (a subprocess under the interpreter on CPU).
        hvp: include the HVP through a small patched ViT.
        bench: afterwards run the GPU suite (bench/gpu_suite.py); needs a CUDA device.
        json_path: also write the result as JSON there.
        verbose: print each row as it finishes.
    """
    from .common.results import atomic_write_text, to_jsonable

    backends = available_backends()
    rows: list = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        ext = "compiled CPU ext" if device.type == "cpu" else "CUDA ext"
        feature_backends = ["eager"] + (["compiled"] if backends[ext] == "yes" else [])
        _feature_rows(rows, device, feature_backends)
        _attention_rows(rows, "eager", device, (torch.float64, torch.float32))
    if triton and backends["triton"].startswith("yes"):
        if "subprocess" in backends["triton"]:
            rows += _triton_subprocess_rows()
        else:
            rows += _triton_rows()
    if hvp:
        for device in devices:
            _hvp_row(rows, device)
            if device.type == "cuda":
                _hvp_row(rows, device, torch.float32)
    result = SelfCheckResult(backends, rows)
    if verbose:
        print(result.table())
    if json_path:
        atomic_write_text(json_path, json.dumps(to_jsonable(result.to_dict()), indent=2))
    if bench:
        if not torch.cuda.is_available():
            raise RuntimeError("selfcheck(bench=True) runs the GPU suite and needs a CUDA device")
        _import_gpu_suite().run_suite()
    return result


__all__ = ["selfcheck", "SelfCheckResult", "CheckRow", "available_backends"]


class _CallableModule(type(sys)):
    """`fastvit_analysis.selfcheck` is both this module and the function: importing the submodule
    rebinds the package attribute to the module, so the module itself forwards calls."""

    def __call__(self, *args, **kwargs):
        return selfcheck(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

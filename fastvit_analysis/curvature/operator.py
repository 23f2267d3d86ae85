"""The Hessian of a loss as a linear operator on one flat parameter vector.

HVPs are computed forward-over-reverse, ``jvp(grad(loss), (theta,), (v,))``, through
``torch.func.functional_call``; ``matmat`` batches k vectors with ``vmap`` in one pass.
:class:`MiniBatchHessians` holds one Hessian per mini-batch and applies all of them at once
(vmap over the mini-batches), for per-mini-batch spectra. :class:`GGNOperator` (JᵀH_outJ) and
:class:`EmpiricalFisherOperator` (Σ g_n g_nᵀ) have the same interface. All share
:class:`CurvatureOperator`, which implements everything but the batched product of one batch:
matvec, to_scipy, dense, the weight-decay shift, batching and loss-reduction weighting over the
data, and, under an initialised torch.distributed group, the all-reduce of every product.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fastvit_analysis import HessianOperator
    >>> model = nn.Sequential(nn.Linear(4, 3))
    >>> H = HessianOperator(model, nn.CrossEntropyLoss(), (torch.randn(8, 4), torch.randint(3, (8,))))
    >>> H.num_params, H.matvec(torch.randn(H.num_params)).shape
    (15, torch.Size([15]))
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from ..common import distributed as dist_utils
from ..common.batches import Batch, materialize_batches
from ..common.deprecation import renamed_attribute, renamed_kwargs
from ..common.modes import eval_mode
from ..common.outputs import OutputFn, check_output_fn, model_logits
from ..common.reduction import batch_weights, loss_reduction_of

LossFn = Callable[[Tensor, Tensor], Tensor]
HVP_MODES = ("forward-over-reverse", "reverse-over-reverse", "double-backward")

_ATTENTION_HINT = (
    "the model uses PyTorch's fused scaled_dot_product_attention, whose kernels support neither "
    "forward-mode AD nor double backward, so no Hessian-vector product can pass through it. Call "
    "fastvit_analysis.patch_attention(model) first, or build the timm model with fused attention off "
    "(e.g. `for m in model.modules(): m.fused_attn = False` where present), or run inside "
    "torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH)."
)


@contextlib.contextmanager
def _prepare_model(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in the state every curvature computation uses, and restore it afterwards.

    Eval mode: BatchNorm uses its running statistics (no buffer is updated), dropout and DropPath
    are off. Each submodule's own `training` flag is restored on exit. Attention modules (timm,
    torchvision, AlterNet) are temporarily switched to fastvit_analysis.fused_attention, whose
    forward-mode and double-backward rules PyTorch's fused SDPA kernels lack, and restored on exit.
    """
    from ..attention.patch import attention_patched

    with eval_mode(model), attention_patched(model):
        yield model


def _is_attention_ad_error(err: BaseException) -> bool:
    msg = str(err).lower()
    return ("scaled_dot_product" in msg or "attention" in msg) and (
        "forward ad" in msg or "derivative" in msg or "double backward" in msg or "not implemented" in msg
        or "not support" in msg)


@contextlib.contextmanager
def _explain_ad_errors() -> Iterator[None]:
    """Turn PyTorch's 'no forward AD for fused attention' error into an actionable RuntimeError."""
    try:
        yield
    except (RuntimeError, NotImplementedError) as err:
        if _is_attention_ad_error(err):
            raise RuntimeError(f"Hessian-vector product failed: {_ATTENTION_HINT}") from None
        raise


def select_parameters(model: nn.Module, params: Sequence[str] | str | None = None) -> list[tuple[str, Tensor]]:
    """The trainable (requires_grad) parameters of `model`, optionally restricted by name.

    `params` holds parameter names or module prefixes ("blocks.0" selects every parameter of that
    block). Raises ValueError for an unknown name or when nothing trainable is selected.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is not None:
        wanted = [params] if isinstance(params, str) else list(params)
        chosen = []
        for name, p in trainable:
            if any(name == w or name.startswith(w + ".") for w in wanted):
                chosen.append((name, p))
        all_names = [n for n, _ in model.named_parameters()]
        for w in wanted:
            if not any(n == w or n.startswith(w + ".") for n in all_names):
                raise ValueError(f"params: {w!r} names no parameter or module of the model")
        trainable = chosen
    if not trainable:
        raise ValueError("the model has no trainable parameters (requires_grad=True) to take the Hessian "
                         "over" + ("" if params is None else f" among params={params!r}"))
    return trainable


class _FlatParameters:
    """Views between one flat [P] vector and a model's named parameters."""

    def __init__(self, named: list[tuple[str, Tensor]]):
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.num_params = sum(self.numels)
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) != 1:
            raise TypeError(f"the selected parameters mix dtypes {sorted(map(str, dtypes))}; cast the model "
                            f"to one dtype")
        self.dtype = named[0][1].dtype
        self.device = named[0][1].device

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        return torch.cat([t.detach().reshape(-1) for t in tensors])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.numels, dim=-1), self.shapes)}


class _LossFunction:
    """theta [P] -> scalar loss of one batch, with every other parameter and buffer held constant."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, named: list[tuple[str, Tensor]],
                 hvp_mode: str = "forward-over-reverse", output_fn: OutputFn | None = None):
        if hvp_mode not in HVP_MODES:
            raise ValueError(f"hvp_mode must be one of {HVP_MODES}, got {hvp_mode!r}")
        self.hvp_mode = hvp_mode
        self.model = model
        self.loss_fn = loss_fn
        self.output_fn = check_output_fn(output_fn)
        self.flat = _FlatParameters(named)
        selected = set(self.flat.names)
        self.constants = {n: t.detach() for n, t in model.named_parameters() if n not in selected}
        self.constants.update({n: b for n, b in model.named_buffers()})
        self.theta = self.flat.flatten([p for _, p in named])

    def outputs(self, theta: Tensor, x: Tensor) -> Tensor:
        """The model's logits at θ (composes with torch.func transforms); a dict/tuple/ModelOutput
        forward goes through common/outputs.py's rule or `output_fn`."""
        return model_logits(functional_call(self.model, {**self.constants, **self.flat.unflatten(theta)}, (x,)),
                            self.output_fn)

    def __call__(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return self.loss_fn(self.outputs(theta, x), y)

    def check_batch(self, index: int, x: Tensor, y: Tensor) -> None:
        """One forward pass: the loss must be a finite scalar (errors name the batch)."""
        with torch.no_grad(), _explain_ad_errors():
            loss = self(self.theta, x, y)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar (reduction 'mean' or 'sum'), got shape {shape} for batch "
                             f"{index}")
        if not torch.isfinite(loss):
            raise ValueError(f"the loss is {loss.item()} on batch {index}: the Hessian is undefined there "
                             f"(check the model's weights and that batch's inputs/targets)")

    def hvp(self, theta: Tensor, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Hv of one batch, recomputing the forward and first backward (composes with vmap)."""
        if self.hvp_mode == "forward-over-reverse":
            return jvp(lambda t: grad(self)(t, x, y), (theta,), (v,))[1]
        return vjp(lambda t: grad(self)(t, x, y), theta)[1](v)[0]  # H symmetric: vᵀH = (Hv)ᵀ

    def ggn_product(self, theta: Tensor, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Jᵀ H_out J v of one batch: J = ∂outputs/∂θ, H_out = ∂²loss/∂outputs² (composes with vmap)."""
        outputs, Jv = jvp(lambda t: self.outputs(t, x), (theta,), (v,))
        HJv = jvp(lambda o: grad(lambda o2: self.loss_fn(o2, y))(o), (outputs,), (Jv,))[1]
        return vjp(lambda t: self.outputs(t, x), theta)[1](HJv)[0]

    def per_sample_gradients(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """[B, P]: row n = ∇θ of loss_fn on sample n alone (batch of one)."""
        def one(xi: Tensor, yi: Tensor) -> Tensor:
            return grad(self)(theta, xi.unsqueeze(0), yi.unsqueeze(0))
        return vmap(one)(x, y)

    def gradient_graph(self, theta: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(θ leaf, ∇L(θ) with its graph): every later Hv is one backward through it (PyHessian's way)."""
        leaf = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self(leaf, x, y), leaf, create_graph=True)
        return leaf, gradient


def _check_common_arguments(model: Any, loss_fn: Any, weight_decay: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {type(loss_fn).__name__}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not math.isfinite(weight_decay):
        raise ValueError(f"weight_decay must be a finite number, got {weight_decay!r}")


def _resolve_distributed(distributed: bool | None) -> bool:
    if distributed is None:
        return dist_utils.world_size() > 1
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True, False or None, got {distributed!r}")
    if distributed and not dist_utils.is_distributed():
        raise ValueError("distributed=True needs an initialised torch.distributed process group "
                         "(run under torchrun, or call torch.distributed.init_process_group first)")
    return distributed


class CurvatureOperator:
    """A symmetric curvature matrix C of a loss over `data`, as a linear operator on flat [P] vectors.

    The protocol every solver (Lanczos, power iteration, Hutchinson/Hutch++, SLQ) takes:
    `matmat(V [k, P]) -> [k, P]`, `shape`, `dtype`, `device`; `matvec` is derived. Subclasses
    implement only `_batch_matmat(x, y, V)`: the product of one batch's own curvature (of that batch's
    loss, as `loss_fn` reduces it) with V [k, P]. This base does the rest:

    - data: one (inputs, targets) batch or an iterable of batches; C = Σ_b w_b C_b with w_b = |b|/N for
      a 'mean' loss and 1 for a 'sum' loss (`loss_fn.reduction`, or `loss_reduction=`), so C is the
      curvature of the loss over all N samples at once, whatever the batching;
    - weight decay λ of a (λ/2)‖θ‖² term: C + λI;
    - distributed (default: on when a torch.distributed group of >1 processes is initialised): `data`
      is this rank's shard; N is summed over ranks and each product all-reduces the rank's partial
      Σ_b w_b C_b V in one flat buffer, so every rank holds the product over all shards;
    - `to_scipy()`, `dense()`, `@`, and `num_hvp` (products counted per vector; `n_hvp` is its deprecated name).

    `num_operators` is 1 here: every row of V is multiplied by the same C. (MiniBatchHessians holds b
    operators and multiplies row i by the i-th.)
    """

    num_operators = 1
    n_hvp = renamed_attribute("n_hvp", "num_hvp")
    vectors_per_pass = renamed_attribute("vectors_per_pass", "per_pass")
    one_operator_per_row = False  # True for MiniBatchHessians: row i of V goes to operator i

    @renamed_kwargs(vectors_per_pass="per_pass")
    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Any, *, weight_decay: float = 0.0,
                 params: Sequence[str] | str | None = None, per_pass: int | None = None,
                 hvp_mode: str = "forward-over-reverse", loss_reduction: str | None = None,
                 distributed: bool | None = None, output_fn: OutputFn | None = None):
        _check_common_arguments(model, loss_fn, weight_decay)
        if per_pass is not None and (isinstance(per_pass, bool) or not isinstance(per_pass, int)
                                             or per_pass < 1):
            raise ValueError(f"per_pass must be a positive int or None, got {per_pass!r}")
        self.model = model
        self.weight_decay = float(weight_decay)
        self.loss_reduction = loss_reduction_of(loss_fn, loss_reduction)
        self.distributed = _resolve_distributed(distributed)
        self._loss = _LossFunction(model, loss_fn, select_parameters(model, params), hvp_mode, output_fn)
        self.flat = self._loss.flat
        if per_pass is None:
            per_pass = 1 << 30 if self.flat.device.type == "cuda" else 8
        self.per_pass = per_pass
        self.num_hvp = 0
        self._set_data(data)

    # -- data --------------------------------------------------------------------------------------
    def _set_data(self, data: Any) -> None:
        self.batches: list[Batch] = materialize_batches(data, device=self.flat.device, name="data")
        sizes = [int(x.shape[0]) for x, _ in self.batches]
        self.num_samples = self._all_reduce_count(sum(sizes))
        self._weights = batch_weights(sizes, self.loss_reduction, self.num_samples)
        with _prepare_model(self.model):
            for i, (x, y) in enumerate(self.batches):
                self._loss.check_batch(i, x, y)

    def _all_reduce_count(self, local: int) -> int:
        if not self.distributed:
            return local
        import torch.distributed as dist

        t = torch.tensor([local], dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(t)
        return int(t.item())

    def _collective_device(self) -> torch.device:
        import torch.distributed as dist

        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    # -- the protocol ------------------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        return self.flat.num_params

    @property
    def hvp_mode(self) -> str:
        return self._loss.hvp_mode

    @property
    def dtype(self) -> torch.dtype:
        return self.flat.dtype

    @property
    def device(self) -> torch.device:
        return self.flat.device

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_params, self.num_params)

    @property
    def parameter_names(self) -> list[str]:
        return list(self.flat.names)

    def parameters_flat(self) -> Tensor:
        """θ as one flat [P] vector (a copy)."""
        return self._loss.theta.clone()

    def _check_vectors(self, V: Tensor, ndim: int, what: str) -> Tensor:
        if not isinstance(V, Tensor):
            raise TypeError(f"{what} must be a tensor, got {type(V).__name__}")
        if V.ndim != ndim or V.shape[-1] != self.num_params:
            want = "[P]" if ndim == 1 else "[k, P]"
            raise ValueError(f"{what} must have shape {want} with P={self.num_params}, got {tuple(V.shape)}")
        if ndim == 2 and self.one_operator_per_row and V.shape[0] != self.num_operators:
            raise ValueError(f"{what} must have shape [b, P]=[{self.num_operators}, {self.num_params}] (one row "
                             f"per operator), got {tuple(V.shape)}")
        return V.to(device=self.device, dtype=self.dtype)

    def matvec(self, v: Tensor) -> Tensor:
        """C v for a flat vector v [P] -> [P]."""
        if self.one_operator_per_row and self.num_operators != 1:
            raise ValueError(f"matvec: this operator holds {self.num_operators} matrices; use matmat(V [b, P])")
        v = self._check_vectors(v, 1, "v")
        return self.matmat(v.unsqueeze(0))[0]

    def matmat(self, V: Tensor) -> Tensor:
        """C V for k flat vectors V [k, P] -> [k, P] (row-wise; all-reduced over ranks when distributed)."""
        V = self._check_vectors(V, 2, "V")
        out = self._local_matmat(V)
        if self.distributed:
            import torch.distributed as dist

            buffer = out.contiguous() if self._collective_device() == out.device else out.cpu()
            dist.all_reduce(buffer)  # one flat buffer per product: the rank's sample-weighted partial
            out = buffer.to(out.device)
        if self.weight_decay:
            out.add_(V, alpha=self.weight_decay)
        self.num_hvp += V.shape[0] // self.num_operators
        return out

    def _local_matmat(self, V: Tensor) -> Tensor:
        """Σ_b w_b C_b V over this process's batches, `per_pass` vectors per pass."""
        out = torch.zeros_like(V)
        step = self.per_pass
        with _prepare_model(self.model), _explain_ad_errors():
            for w, (x, y) in zip(self._weights, self.batches):
                for s in range(0, V.shape[0], step):
                    out[s:s + step].add_(self._batch_matmat(x, y, V[s:s + step]), alpha=w)
        return out

    def _batch_matmat(self, x: Tensor, y: Tensor, V: Tensor) -> Tensor:
        raise NotImplementedError

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.matvec(other) if other.ndim == 1 else self.matmat(other.T).T

    def to_scipy(self):
        """A scipy.sparse.linalg.LinearOperator (float64 numpy in and out) for scipy's eigsh & co."""
        from scipy.sparse.linalg import LinearOperator

        if self.one_operator_per_row:
            raise ValueError(f"to_scipy: this operator holds {self.num_operators} matrices; scipy needs one")

        def _mv(v: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.asarray(v).reshape(-1))
            return self.matvec(t).detach().cpu().double().numpy()

        def _mm(V: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.ascontiguousarray(np.asarray(V).T))
            return self.matmat(t).detach().cpu().double().numpy().T

        return LinearOperator(self.shape, matvec=_mv, matmat=_mm, rmatvec=_mv, dtype=np.float64)

    def dense(self) -> Tensor:
        """The full [P, P] matrix (P products; for small models and tests); [b, P, P] for b operators."""
        eye = torch.eye(self.num_params, dtype=self.dtype, device=self.device)
        if not self.one_operator_per_row:
            return self.matmat(eye)
        b = self.num_operators
        return torch.stack([self.matmat(e.expand(b, -1).contiguous()) for e in eye], dim=1)


class HessianOperator(CurvatureOperator):
    """H = d²L/dθ² of the loss over `data`, as a linear operator on flat [P] vectors.

    Args:
        model: any nn.Module; it is put in eval mode (BatchNorm running statistics, dropout and
            DropPath off) while products are computed, and its modes are restored afterwards.
            Parameters, buffers and `.grad` are never modified.
        loss_fn: `loss_fn(outputs, targets) -> scalar`, e.g. nn.CrossEntropyLoss() (soft targets work).
        output_fn: model output -> logits, for models returning a dict/tuple/ModelOutput the default
            rule (fastvit_analysis.common.outputs.model_logits) does not cover.
        data: one (inputs, targets) batch or an iterable of batches; H is the Hessian of the loss over
            all samples at once: batches weighted by size for a 'mean' loss, summed for a 'sum' loss.
        loss_reduction: 'mean' or 'sum' when loss_fn has no `.reduction` attribute (default 'mean').
        weight_decay: λ of a (λ/2)‖θ‖² term: adds λ·v to every product.
        params: restrict θ to these parameter names / module prefixes (default: all trainable).
        distributed: under torch.distributed, `data` is this rank's shard and every product is the
            all-reduced product over all shards (default: on when the group has > 1 process).
        per_pass: how many vectors one vmapped pass carries in `matmat` (default: all on a
            GPU, 8 on CPU, which bounds the memory of the batched tangents; timings in bench/).
        hvp_mode: "forward-over-reverse" (jvp of grad) or "reverse-over-reverse" (vjp of grad, i.e.
            double backward through torch.func) recompute the forward and the first backward for
            every pass. "double-backward" builds the first-order graph of each batch once, on the
            first product, keeps it (memory: about two training steps per batch, for every batch of
            `data`) and makes every later product one backward through it, vector by vector.
            Default (None): "double-backward" when `data` is one batch, else "forward-over-reverse".
            The operator is a snapshot of θ at construction in every mode.

    `matvec(v)`: v [P] -> Hv [P]. `matmat(V)`: V [k, P] -> HV [k, P] (vmapped over vectors, or one
    backward per vector through the kept graph in "double-backward" mode).
    `num_hvp` counts products (one per vector over the whole data).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model, batch = nn.Linear(4, 3), (torch.randn(32, 4), torch.randint(0, 3, (32,)))
        >>> H = HessianOperator(model, nn.CrossEntropyLoss(), batch, weight_decay=5e-4)
        >>> HV = H.matmat(torch.eye(H.num_params))  # the dense Hessian, one vmapped pass
        >>> HV.shape, bool(torch.allclose(HV, HV.T, atol=1e-6))
        (torch.Size([15, 15]), True)
    """

    @renamed_kwargs(vectors_per_pass="per_pass")
    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Any, *, weight_decay: float = 0.0,
                 params: Sequence[str] | str | None = None, per_pass: int | None = None,
                 hvp_mode: str | None = None, loss_reduction: str | None = None,
                 distributed: bool | None = None, output_fn: OutputFn | None = None):
        self._graphs: list[tuple[Tensor, Tensor]] | None = None  # hvp_mode="double-backward"
        super().__init__(model, loss_fn, data, weight_decay=weight_decay, params=params,
                         per_pass=per_pass, hvp_mode=hvp_mode or "forward-over-reverse",
                         loss_reduction=loss_reduction, distributed=distributed, output_fn=output_fn)
        if hvp_mode is None and len(self.batches) == 1:
            self._loss.hvp_mode = "double-backward"

    def _batch_matmat(self, x: Tensor, y: Tensor, V: Tensor) -> Tensor:
        if V.shape[0] == 1:
            return self._loss.hvp(self._loss.theta, x, y, V[0]).unsqueeze(0)
        return vmap(self._loss.hvp, in_dims=(None, None, None, 0))(self._loss.theta, x, y, V)

    def _local_matmat(self, V: Tensor) -> Tensor:
        if self._loss.hvp_mode != "double-backward":
            return super()._local_matmat(V)
        out = torch.zeros_like(V)
        self._add_cached_products(out, V)
        return out

    def _add_cached_products(self, out: Tensor, V: Tensor) -> None:
        """out [k, P] += Σ_batches w_b H_b V through the kept first-order graphs (built on first use)."""
        if self._graphs is None:
            with _prepare_model(self.model), _explain_ad_errors():
                self._graphs = [self._loss.gradient_graph(self._loss.theta, x, y) for x, y in self.batches]
        with _explain_ad_errors():
            for w, (leaf, gradient) in zip(self._weights, self._graphs):
                for row, v in zip(out, V):
                    (hv,) = torch.autograd.grad(gradient, leaf, grad_outputs=v, retain_graph=True)
                    row.add_(hv, alpha=w)


class _ProductOperator(CurvatureOperator):
    """The shared constructor of the operators whose product has one form (GGN, empirical Fisher):
    CurvatureOperator's arguments without `hvp_mode`."""

    @renamed_kwargs(vectors_per_pass="per_pass")
    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Any, *, weight_decay: float = 0.0,
                 params: Sequence[str] | str | None = None, per_pass: int | None = None,
                 loss_reduction: str | None = None, distributed: bool | None = None,
                 output_fn: OutputFn | None = None):
        super().__init__(model, loss_fn, data, weight_decay=weight_decay, params=params,
                         per_pass=per_pass, loss_reduction=loss_reduction,
                         distributed=distributed, output_fn=output_fn)


class GGNOperator(_ProductOperator):
    """The generalised Gauss-Newton matrix G = Σ_b w_b J_bᵀ H_out,b J_b (J = ∂outputs/∂θ, H_out =
    ∂²loss/∂outputs²), positive semi-definite for a convex loss; same interface and arguments as
    HessianOperator (products by jvp of the model, an output-space HVP and a vjp; vmapped over vectors).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from fastvit_analysis import GGNOperator
        >>> model = nn.Sequential(nn.Linear(4, 3)).double()
        >>> G = GGNOperator(model, nn.CrossEntropyLoss(), (torch.randn(8, 4).double(), torch.randint(3, (8,))))
        >>> bool(torch.linalg.eigvalsh(G.dense()).min() > -1e-12)
        True
    """

    def _batch_matmat(self, x: Tensor, y: Tensor, V: Tensor) -> Tensor:
        return vmap(self._loss.ggn_product, in_dims=(None, None, None, 0))(self._loss.theta, x, y, V)


class EmpiricalFisherOperator(_ProductOperator):
    """The empirical Fisher F = Σ_n c·g_n g_nᵀ, g_n = ∇θ of the loss of sample n alone, c = 1/N for a
    'mean' loss over N samples and 1 for a 'sum' loss (curvlinops' convention); same interface and
    arguments as HessianOperator. Each product recomputes the batch's per-sample gradients [B, P]
    (vmap over samples; memory B·P per batch).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from fastvit_analysis import EmpiricalFisherOperator
        >>> model = nn.Sequential(nn.Linear(4, 3)).double()
        >>> F = EmpiricalFisherOperator(model, nn.CrossEntropyLoss(),
        ...                             (torch.randn(8, 4).double(), torch.randint(3, (8,))))
        >>> F.matvec(torch.ones(F.num_params, dtype=torch.float64)).shape
        torch.Size([15])
    """

    def _batch_matmat(self, x: Tensor, y: Tensor, V: Tensor) -> Tensor:
        G = self._loss.per_sample_gradients(self._loss.theta, x, y)      # [B, P]
        scale = 1.0 / x.shape[0] if self.loss_reduction == "mean" else 1.0
        return (V @ G.T) @ G * scale

    def _local_matmat(self, V: Tensor) -> Tensor:
        # per-sample gradients once per batch and product, for all vectors at once
        out = torch.zeros_like(V)
        with _prepare_model(self.model), _explain_ad_errors():
            for w, (x, y) in zip(self._weights, self.batches):
                out.add_(self._batch_matmat(x, y, V), alpha=w)
        return out


class MiniBatchHessians(CurvatureOperator):
    """b Hessians, one per mini-batch, applied all at once: V [b, P] -> (H_i V_i) [b, P].

    `inputs` [b, B, ...] and `targets` [b, B, ...] stack b mini-batches of equal size B; the products
    are vmapped over the mini-batches (one forward-over-reverse pass for all b). Each H_i is the
    Hessian of loss_fn on mini-batch i alone (never all-reduced: mini-batches are independent).
    `matmat_rows(V [a, P], rows [a])` multiplies a subset (a solver's unfinished problems);
    `row_products` counts single mini-batch products, `n_hvp` full passes over all b.
    """

    one_operator_per_row = True

    def __init__(self, model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *,
                 weight_decay: float = 0.0, params: Sequence[str] | str | None = None,
                 first_index: int = 0, hvp_mode: str = "forward-over-reverse",
                 output_fn: OutputFn | None = None):
        # vmapped over mini-batches: "double-backward" (a kept autograd graph) cannot be vmapped and
        # computes as "reverse-over-reverse" here
        self._first_index = first_index
        self.row_products = 0   # single mini-batch products (n_hvp counts passes over all b)
        super().__init__(model, loss_fn, (inputs, targets), weight_decay=weight_decay, params=params,
                         hvp_mode=hvp_mode, distributed=False, output_fn=output_fn)

    def _set_data(self, data: Any) -> None:
        inputs, targets = data
        self.inputs = inputs.to(self.flat.device)
        self.targets = targets.to(self.flat.device)
        self.num_samples = int(inputs.shape[0] * inputs.shape[1])
        with _prepare_model(self.model):
            for i in range(inputs.shape[0]):
                self._loss.check_batch(self._first_index + i, self.inputs[i], self.targets[i])

    @property
    def num_operators(self) -> int:  # type: ignore[override]
        return self.inputs.shape[0]

    @property
    def num_batches(self) -> int:
        return self.inputs.shape[0]

    def _local_matmat(self, V: Tensor, rows: Tensor | None = None) -> Tensor:
        inputs, targets = (self.inputs, self.targets) if rows is None else (self.inputs[rows], self.targets[rows])
        batched = vmap(self._loss.hvp, in_dims=(None, 0, 0, 0))
        with _prepare_model(self.model), _explain_ad_errors():
            return batched(self._loss.theta, inputs, targets, V)

    def matmat_rows(self, V: Tensor, rows: Tensor) -> Tensor:
        """(H_{rows[i]} V_i) for V [a, P] and mini-batch indices rows [a]: a subset of the products
        (a solver's unfinished problems), at the cost of a mini-batches."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.inputs.device).reshape(-1)
        if not isinstance(V, Tensor) or V.ndim != 2 or V.shape != (rows.numel(), self.num_params):
            raise ValueError(f"V must have shape [len(rows), P]=[{rows.numel()}, {self.num_params}], got "
                             f"{tuple(V.shape) if isinstance(V, Tensor) else type(V).__name__}")
        V = V.to(device=self.device, dtype=self.dtype)
        out = self._local_matmat(V, rows)
        if self.weight_decay:
            out.add_(V, alpha=self.weight_decay)
        self.row_products += V.shape[0]
        return out

    def matmat(self, V: Tensor) -> Tensor:
        out = super().matmat(V)
        self.row_products += V.shape[0]
        return out

"""Linear CKA with the unbiased HSIC estimator, and mini-batch CKA between all layer pairs (docs/methods.md §3c,
Nguyen et al. 2021).

For n examples, K = XXᵀ and L = YYᵀ with zeroed diagonals K̃, L̃:

    HSIC₁ = [Σ(K̃∘L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·(K̃1)·(L̃1)] / (n(n−3)),   n > 3.

Every term is an elementwise sum, a row sum or a total, so HSIC costs O(n²) per pair; with the Grams of
one batch stacked as G (L, n²) all pairs come from one (La, n²) × (n², Lb) product plus two small
outer terms. The Gram of each layer is computed once per batch. Mini-batch CKA accumulates
HSIC(K, L), HSIC(K, K), HSIC(L, L) over batches: CKA = ΣHSIC(K,L) / √(ΣHSIC(K,K)·ΣHSIC(L,L)).

Intervals (docs/methods.md §5): the per-batch HSIC triples are kept; the 95% interval of every CKA entry, and of
the mean CKA within / between stages, is a percentile bootstrap over BATCHES (the sums above taken
over resampled batches; fixed seed), NaN with fewer than 8 batches.

Example:
    >>> import torch
    >>> from fastvit_analysis import linear_cka
    >>> x = torch.randn(64, 10)
    >>> round(float(linear_cka(x, 3 * x)), 6)
    1.0
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..common.batches import iter_batches, model_device
from ..common.intervals import ArrayEstimate, Estimate, bootstrap_interval, estimates_to_dict
from ..common.progress import progress_bar
from ..common.results import Result
from .extract import LatentExtractor, LatentSpec, batch_count


@dataclass
class CKAResult(Result):
    """[La, Lb] mini-batch CKA matrix between the latents of model A (rows) and model B (columns).

    For the intervals: the per-batch unbiased HSIC pieces `batch_hsic_ab` (num_batches, La, Lb),
    `batch_hsic_aa` (num_batches, La), `batch_hsic_bb` (num_batches, Lb), and `matrix_ci95`
    (La, Lb, 2) from a bootstrap over batches (NaN with fewer than 8 batches). `stages` (one label
    per latent, within one model) enables the within/between-stage means of `summary()`.
    """

    names_a: list[str]
    names_b: list[str]
    kinds_a: list[str]
    kinds_b: list[str]
    matrix: list[list[float]]
    num_batches: int = 0
    num_samples: int = 0
    batch_hsic_ab: list[list[list[float]]] = field(default_factory=list)
    batch_hsic_aa: list[list[float]] = field(default_factory=list)
    batch_hsic_bb: list[list[float]] = field(default_factory=list)
    matrix_ci95: list[list[list[float]]] = field(default_factory=list)
    stages: list[Any] | None = None
    bootstrap_seed: int = 0
    num_resamples: int = 1000

    def _per_batch(self) -> np.ndarray:
        """(num_batches, La·Lb + La + Lb): the additive per-batch pieces of the pooled HSIC sums."""
        nb = self.num_batches
        return np.concatenate([np.asarray(self.batch_hsic_ab, dtype=np.float64).reshape(nb, -1),
                               np.asarray(self.batch_hsic_aa, dtype=np.float64).reshape(nb, -1),
                               np.asarray(self.batch_hsic_bb, dtype=np.float64).reshape(nb, -1)], axis=1)

    def _bootstrap(self, of_matrix) -> "Estimate | ArrayEstimate":
        """Bootstrap over batches of `of_matrix((R, La, Lb) CKA matrices) -> (R, ...)`."""
        la, lb = len(self.names_a), len(self.names_b)

        def statistic(totals: np.ndarray) -> np.ndarray:
            cross = totals[:, :la * lb].reshape(-1, la, lb)
            aa, bb = totals[:, la * lb:la * lb + la], totals[:, la * lb + la:]
            return of_matrix(cross / np.sqrt(aa[:, :, None] * bb[:, None, :]))

        return bootstrap_interval(self._per_batch(), statistic, pooled=True, seed=self.bootstrap_seed,
                                  num_resamples=self.num_resamples, min_units=MIN_BATCHES)

    def matrix_interval(self) -> ArrayEstimate:
        """The CKA matrix with its (La, Lb, 2) interval, n = batches."""
        return self._bootstrap(lambda m: m)  # type: ignore[return-value]

    def stage_means(self, stages: Sequence[Hashable] | None = None) -> dict[str, Estimate]:
        """Mean CKA over pairs of distinct latents in the same stage ("cka/within_stage"), in
        different stages ("cka/between_stage") and their difference ("cka/within_minus_between",
        docs/methods.md §5 C7), with intervals from one bootstrap over batches. `stages`: one label per latent
        (default: the result's `stages`; None = in no stage, e.g. the stem: its pairs are left out);
        needs a CKA of one model with itself."""
        stages = self.stages if stages is None else list(stages)
        if stages is None:
            raise ValueError("stages: give one stage label per latent (e.g. [0, 0, 1, 1, ...])")
        if self.names_a != self.names_b or len(stages) != len(self.names_a):
            raise ValueError(f"stages needs a CKA of one model with itself and one label per latent "
                             f"({len(self.names_a)}), got {len(stages)} labels")
        index: dict[Hashable, int] = {}
        labels = np.array([-1 if s is None else index.setdefault(s, len(index)) for s in stages])
        staged = (labels[:, None] >= 0) & (labels[None, :] >= 0)
        same = labels[:, None] == labels[None, :]
        off_diagonal = ~np.eye(len(stages), dtype=bool)
        within, between = same & off_diagonal & staged, ~same & staged
        if not within.any() or not between.any():
            raise ValueError("stages: need at least two stages and a stage with two latents")

        def means(m: np.ndarray) -> np.ndarray:
            w, b = m[:, within].mean(axis=1), m[:, between].mean(axis=1)
            return np.stack([w, b, w - b], axis=1)

        est = self._bootstrap(means)
        keys = ("cka/within_stage", "cka/between_stage", "cka/within_minus_between")
        return {k: est[i] for i, k in enumerate(keys)}  # type: ignore[index]

    def summary(self) -> dict[str, Estimate]:
        """Within/between-stage mean CKA (when `stages` is set) and the mean off-diagonal CKA
        ("cka/mean_off_diagonal", for one model with itself), with intervals (n = batches)."""
        out: dict[str, Estimate] = {}
        if self.names_a == self.names_b and len(self.names_a) > 1 and self.num_batches:
            off = ~np.eye(len(self.names_a), dtype=bool)
            out["cka/mean_off_diagonal"] = self._bootstrap(lambda m: m[:, off].mean(axis=1))  # type: ignore
        if self.stages is not None and self.num_batches:
            out |= self.stage_means()
        return out

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"summary": estimates_to_dict(self.summary())}

    def plot(self, **kwargs):
        """Heat map of the matrix (`fastvit_analysis.plot.features.cka`) -> Figure."""
        from ..plot.features import cka

        return cka(self, **kwargs)


MIN_BATCHES = 8  # fewer batches: NaN intervals (a percentile bootstrap over < 8 units is too coarse)


def _check_n(n: int, what: str) -> None:
    if n < 4:
        raise ValueError(f"{what}: the unbiased HSIC needs at least 4 examples per batch, got {n}")


def zero_diagonal_gram(x: Tensor) -> Tensor:
    """Linear Gram K = XcXcᵀ of (n, ...) features flattened to (n, d) and centred over the n examples,
    with a zeroed diagonal, float64.

    Centring is exact for the unbiased HSIC (it is invariant to K → K + a1ᵀ + 1bᵀ, which is what a
    shift of the features adds), and it keeps float32 Grams accurate: for features with a large common
    offset (ReLU/GELU outputs) the uncentred Gram's entries are dominated by the offset and the HSIC
    is a difference of nearly equal sums (1.7e-3 relative error in float32 at offset 5). Features
    below float32 (fp16/bf16) are centred and multiplied in float32.

    Example:
        >>> x = torch.randn(8, 3, dtype=torch.float64)
        >>> bool(torch.allclose(zero_diagonal_gram(x + 5.0), zero_diagonal_gram(x)))
        True
    """
    x = x.reshape(x.shape[0], -1)
    if not x.is_floating_point() or torch.finfo(x.dtype).bits < 32:
        x = x.float()
    x = x - x.mean(dim=0, dtype=torch.float64, keepdim=True).to(x.dtype)
    gram = (x @ x.T).to(torch.float64)
    gram.diagonal().zero_()
    return gram


class GramStack:
    """The zero-diagonal Grams of several layers of one batch, with their row sums and totals, so
    that the unbiased HSIC of every pair is an O(n²) reduction."""

    def __init__(self, grams: Sequence[Tensor]):
        if not grams:
            raise ValueError("no Gram matrices")
        self.n = grams[0].shape[0]
        self.flat = torch.stack([g.reshape(-1) for g in grams])  # (L, n²)
        rows = torch.stack([g.sum(dim=1) for g in grams])  # (L, n)
        self.rows = rows
        self.totals = rows.sum(dim=1)  # (L,)

    def hsic(self, other: "GramStack") -> Tensor:
        """[La, Lb] unbiased HSIC₁ of every pair."""
        n = self.n
        if other.n != n:
            raise ValueError(f"Gram stacks of different batch sizes ({n} vs {other.n})")
        _check_n(n, "minibatch_cka")
        device = self.flat.device  # the two models may live on different devices
        trace_term = self.flat @ other.flat.to(device).T
        total_term = torch.outer(self.totals, other.totals.to(device)) / ((n - 1) * (n - 2))
        row_term = (self.rows @ other.rows.to(device).T) * (2.0 / (n - 2))
        return (trace_term + total_term - row_term) / (n * (n - 3))

    def self_hsic(self) -> Tensor:
        """[L] unbiased HSIC₁(K, K) of every layer."""
        n = self.n
        _check_n(n, "minibatch_cka")
        trace_term = (self.flat * self.flat).sum(dim=1)
        total_term = self.totals ** 2 / ((n - 1) * (n - 2))
        row_term = (self.rows * self.rows).sum(dim=1) * (2.0 / (n - 2))
        return (trace_term + total_term - row_term) / (n * (n - 3))


def unbiased_hsic(k: Tensor, l: Tensor) -> Tensor:
    """Unbiased HSIC₁ of two (n, n) Gram matrices (their diagonals are ignored), O(n²)."""
    if k.shape != l.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k and l must be (n, n) Gram matrices of one size, got {tuple(k.shape)}, {tuple(l.shape)}")
    k = k.to(torch.float64).clone()
    l = l.to(torch.float64).clone()
    k.diagonal().zero_()
    l.diagonal().zero_()
    return GramStack([k]).hsic(GramStack([l]))[0, 0]


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA of one batch with the unbiased HSIC: x (n, d1), y (n, d2) (further dims flattened).

    Returns a 0-d float64 tensor; invariant to orthogonal transforms and isotropic scaling of x or y.

    Example:
        >>> x = torch.randn(32, 8); q, _ = torch.linalg.qr(torch.randn(8, 8))
        >>> bool(torch.isclose(linear_cka(x, x @ q), torch.tensor(1.0, dtype=torch.float64)))
        True
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a tensor (n, d), got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{name} must be (n, d) features, got shape {tuple(t.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: n = {x.shape[0]} vs {y.shape[0]}")
    _check_n(x.shape[0], "linear_cka")
    a, b = GramStack([zero_diagonal_gram(x)]), GramStack([zero_diagonal_gram(y)])
    return (a.hsic(b)[0, 0] / torch.sqrt(a.self_hsic()[0] * b.self_hsic()[0]))


def _batch_grams(extractor: LatentExtractor, x: Tensor) -> GramStack:
    grams: dict[str, Tensor] = {}

    def on_latent(spec: LatentSpec, z: Tensor) -> None:
        grams[spec.name] = zero_diagonal_gram(z)

    extractor(x, on_latent)
    return GramStack([grams[name] for name in extractor.names])


def minibatch_cka(model_a: nn.Module, data: Any, model_b: nn.Module | None = None,
                  layers_a: Sequence[str | LatentSpec] | None = None,
                  layers_b: Sequence[str | LatentSpec] | None = None, *,
                  kinds_a: Mapping[str, str] | None = None, kinds_b: Mapping[str, str] | None = None,
                  progress: bool = True, stages: Sequence[Hashable] | None = None, bootstrap_seed: int = 0,
                  num_resamples: int = 1000) -> CKAResult:
    """Mini-batch linear CKA between every latent of `model_a` and every latent of `model_b` (default:
    `model_a` itself), accumulated over the batches of `data` (each of at least 4 examples).

    Latents are flattened to (n, features) (prefix tokens included). Returns a CKAResult with the
    [La, Lb] matrix and its interval `matrix_ci95` (bootstrap over batches, `num_resamples` from
    `bootstrap_seed`; >= 8 batches for an interval). `stages` (one label per latent of model A, for
    a model with itself) adds the within/between-stage means to `summary()`.

    Example (a model with itself: 1 on the diagonal):
        >>> import timm
        >>> net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1])
        >>> batches = [(torch.randn(4, 3, 32, 32), torch.zeros(4)) for _ in range(2)]
        >>> res = minibatch_cka(net, batches, progress=False)
        >>> len(res.matrix), [round(res.matrix[i][i], 6) for i in range(2)]
        (5, [1.0, 1.0])
        >>> fig = res.plot()
    """
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 200:
        raise ValueError(f"num_resamples must be an integer >= 200 (docs/methods.md §5), got {num_resamples!r}")
    extractor_a = LatentExtractor(model_a, layers_a, kinds=kinds_a)
    if stages is not None and (model_b is not None or len(list(stages)) != len(extractor_a.specs)):
        raise ValueError(f"stages: one label per latent of model_a ({len(extractor_a.specs)}) for a CKA "
                         f"of one model with itself, got {len(list(stages))} labels"
                         + (" and a model_b" if model_b is not None else ""))
    same = model_b is None and layers_b is None and kinds_b is None
    if model_b is None:
        model_b = model_a
    extractor_b = extractor_a if same else LatentExtractor(model_b, layers_b, kinds=kinds_b)
    la, lb = len(extractor_a.specs), len(extractor_b.specs)
    cross = torch.zeros(la, lb, dtype=torch.float64)
    self_a = torch.zeros(la, dtype=torch.float64)
    self_b = torch.zeros(lb, dtype=torch.float64)
    device_a, device_b = model_device(model_a), model_device(model_b)
    total = batch_count(data)
    batches = samples = 0
    pieces: list[tuple[Tensor, Tensor, Tensor]] = []  # per batch: HSIC(K,L), HSIC(K,K), HSIC(L,L)
    for x, _ in progress_bar(iter_batches(data), total=total, desc="cka", progress=progress):
        _check_n(x.shape[0], "minibatch_cka: data")
        stack_a = _batch_grams(extractor_a, x.to(device_a))
        stack_b = stack_a if same else _batch_grams(extractor_b, x.to(device_b))
        batch_cross = stack_a.hsic(stack_b).cpu()
        diag_a = stack_a.self_hsic().cpu()
        diag_b = diag_a if same else stack_b.self_hsic().cpu()
        cross += batch_cross
        self_a += diag_a
        self_b += diag_b
        pieces.append((batch_cross, diag_a, diag_b))
        batches += 1
        samples += x.shape[0]
    matrix = cross / torch.sqrt(torch.outer(self_a, self_b))
    result = CKAResult(names_a=extractor_a.names, names_b=extractor_b.names,
                       kinds_a=[s.kind for s in extractor_a.specs], kinds_b=[s.kind for s in extractor_b.specs],
                       matrix=matrix.tolist(), num_batches=batches, num_samples=samples,
                       batch_hsic_ab=torch.stack([p[0] for p in pieces]).tolist(),
                       batch_hsic_aa=torch.stack([p[1] for p in pieces]).tolist(),
                       batch_hsic_bb=torch.stack([p[2] for p in pieces]).tolist(),
                       stages=None if stages is None else list(stages), bootstrap_seed=int(bootstrap_seed),
                       num_resamples=num_resamples)
    result.matrix_ci95 = result.matrix_interval().ci95.tolist()
    return result

"""The paper's claims C1–C8 (docs/methods.md §5) as measured contrasts with 95% intervals and a verdict.

`evaluate_claims(results, roles=...)` takes the analyses' results per model label and which label
plays the CNN (ResNet), the ViT and AlterNet, and returns one row per claim: the contrast (an
Estimate), the sign the paper expects, and a verdict from the numbers alone:

- "supported": the 95% interval excludes 0 on the expected side;
- "not supported": it excludes 0 on the other side;
- "inconclusive": it covers 0 (or no interval could be formed: see the row's detail);
- "not measured": an input the claim needs is missing.

How each contrast gets its interval (the same resampling for both models, docs/methods.md §5):

- C1, C2, C3 (landscape, max-eigenvalue spectrum): percentile bootstrap of the difference over data
  batches / mini-batches. When both models have the same number of units the SAME resample indices
  are applied to both (paired: the right thing when they were measured on the same batches, and
  still a valid interval when the units are independent); otherwise each is resampled on its own.
- C5, C8 (noise robustness, accuracy): per test image, paired over the same images when both models
  carry per-image correctness of equal length; independent resampling otherwise.
- C4, C7 (Fourier, CKA): a (paired) bootstrap over batches when the results carry per-batch data;
  otherwise the difference of the two models' summary Estimates with independent normal errors;
  otherwise the point value with no interval (inconclusive, said in the detail).
- The per-block parts of C4 and C6 count the blocks of each kind (MSA vs Conv/MLP, pooled over the
  models given) whose change across the block has the expected sign; the contrast is that fraction
  minus 1/2 with the Wilson interval of the fraction (blocks treated as independent trials), so
  "supported" means a majority of blocks, beyond chance, change the way the paper says.

Example:
    >>> import numpy as np
    >>> from fastvit_analysis.common.intervals import Estimate
    >>> res = evaluate_claims({"resnet": {"accuracy": (850, 1000)}, "vit": {"accuracy": (800, 1000)},
    ...                        "alt": {"accuracy": (900, 1000)}},
    ...                       roles={"cnn": "resnet", "vit": "vit", "alternet": "alt"})
    >>> row = res.row("C8")
    >>> round(row.contrast.value, 6), row.verdict
    (5.0, 'supported')
    >>> res.row("C1").verdict
    'not measured'
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .common.intervals import (
    Estimate,
    bootstrap_difference,
    bootstrap_indices,
    bootstrap_interval,
    verdict,
    wilson_interval,
)
from .common.results import Result
from .features.fourier import MIN_BATCHES  # fewer units than this: NaN interval (too coarse a bootstrap)
from .features.noise import HIGH_FREQUENCY  # C5: f >= 0.6π

__all__ = ["evaluate_claims", "ClaimsResult", "ClaimRow", "ROLES", "CLAIMS", "stage_of"]

ROLES = ("cnn", "vit", "alternet")
NOT_MEASURED = "not measured"
_Z95 = 1.959963984540054
_NAN2 = (float("nan"), float("nan"))

# id -> (title, expected sign of the contrast)
CLAIMS: dict[str, tuple[str, int]] = {
    "C1": ("flatness: landscape rise at the border over the centre, ViT − ResNet", -1),
    "C2": ("non-convexity: negative fraction of the max-eigenvalue spectrum, ViT − ResNet", +1),
    "C3": ("curvature magnitude: mean of the positive top eigenvalues, ViT − ResNet", -1),
    "C4": ("low-pass: Δ log amplitude at the highest frequency of the last block, ViT − ResNet", -1),
    "C4.msa": ("low-pass: MSA blocks lower high-frequency Δ log amplitude (fraction of blocks − 1/2)", +1),
    "C4.conv": ("high-pass: Conv/MLP blocks raise high-frequency Δ log amplitude (fraction − 1/2)", +1),
    "C5": ("texture robustness: ΔAcc under noise at f ≥ 0.6π (pp), ViT − ResNet", +1),
    "C6.msa": ("variance: MSA blocks reduce feature-map variance (fraction of blocks − 1/2)", +1),
    "C6.conv": ("variance: Conv/MLP blocks increase feature-map variance (fraction − 1/2)", +1),
    "C6.stage": ("variance: in the ResNet it peaks at stage ends (fraction of stages − 1/2)", +1),
    "C7.cnn": ("stages: mean CKA within stages − between stages, ResNet", +1),
    "C7.alternet": ("stages: mean CKA within stages − between stages, AlterNet", +1),
    "C8": ("AlterNet accuracy ≥ both: min(AlterNet − ResNet, AlterNet − ViT) (pp)", +1),
}


@dataclasses.dataclass(frozen=True)
class ClaimRow:
    """One claim: `contrast` (None when not measured), the `expected_sign` of the contrast, the
    `verdict` and a one-line `detail` with the models' own values and the interval method."""

    id: str
    title: str
    contrast: Estimate | None
    expected_sign: int
    verdict: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title,
                "contrast": None if self.contrast is None else self.contrast.to_dict(),
                "expected_sign": self.expected_sign, "verdict": self.verdict, "detail": self.detail}


@dataclasses.dataclass
class ClaimsResult(Result):
    """Rows C1–C8 (with the per-block parts of C4/C6 and C7 per multi-stage model) and the roles."""

    rows: list[ClaimRow]
    roles: dict[str, str]

    def row(self, claim_id: str) -> ClaimRow:
        for r in self.rows:
            if r.id == claim_id:
                return r
        raise KeyError(f"no claim {claim_id!r}; claims: {[r.id for r in self.rows]}")

    def to_markdown(self, spec: str = ".3g") -> str:
        """A table "claim | contrast [lo, hi] | verdict | detail", one line per row."""
        lines = ["| claim | contrast [lo, hi] | verdict | detail |", "|---|---|---|---|"]
        for r in self.rows:
            contrast = "–" if r.contrast is None else f"{r.contrast:{spec}} (n={r.contrast.n})"
            title = f"**{r.id}** {r.title}".replace("|", "\\|")
            lines.append(f"| {title} | {contrast} | {r.verdict} | {r.detail.replace('|', '/')} |")
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ inputs
def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _floats(x: Any) -> np.ndarray:
    """Nested lists / tensors with None or "nan" entries -> float64 array (NaN for missing)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=object).astype(np.float64)


def _summary(obj: Any) -> dict[str, Estimate]:
    """The result's summary Estimates (from summary() or from a JSON "summary" block)."""
    method = getattr(obj, "summary", None)
    raw = method() if callable(method) else _field(obj, "summary", None)
    out = {}
    for k, v in (raw or {}).items():
        if isinstance(v, Estimate):
            out[k] = v
        elif isinstance(v, Mapping) and {"value", "ci95", "n"} <= set(v) and not isinstance(v["value"], list):
            out[k] = Estimate.from_dict(v)
    return out


def stage_of(name: str) -> str | None:
    """The stage a latent belongs to, from its name: "layer2.1" -> "layer2", "stages.1.blocks.0" ->
    "stages.1", "layers.0..." (Swin), "transformers.2..." (PiT); None for the stem / patch embedding
    and single-stage models ("blocks.3:msa")."""
    m = re.match(r"^(layer\d+|stages\.\d+|layers\.\d+|transformers\.\d+)(?:\.|$)", name)
    return m.group(1) if m else None


def _stages(result: Any, names: Sequence[str], key: str = "stages") -> list[str | None]:
    given = _field(result, key, None)
    if given is not None and len(given) == len(names):
        return [None if s is None else str(s) for s in given]
    return [stage_of(n) for n in names]


# ----------------------------------------------------------------------------------- contrasts
@dataclasses.dataclass
class _Measure:
    """One model's measured quantity: its Estimate, and per-unit rows + a pooled statistic of their
    totals when a bootstrap over units is possible."""

    estimate: Estimate
    units: np.ndarray | None = None
    statistic: Callable[[np.ndarray], np.ndarray] | None = None
    unit: str = "units"


def _fmt(e: Estimate) -> str:
    return f"{e:.3g} (n={e.n})"


def _difference(a: _Measure, b: _Measure, *, seed: int, num_resamples: int,
                scale: float = 1.0) -> tuple[Estimate, str]:
    """statistic(b) − statistic(a) with the interval of docs/methods.md §5; returns (Estimate, method)."""
    if a.units is not None and b.units is not None and a.statistic is b.statistic:
        paired = a.units.shape[0] == b.units.shape[0]
        e = bootstrap_difference(a.units, b.units, a.statistic, pooled=True, paired=paired, seed=seed,
                                 num_resamples=num_resamples, min_units=MIN_BATCHES)
        how = (f"paired bootstrap over {a.units.shape[0]} {a.unit}" if paired else
               f"independent bootstrap over {a.units.shape[0]} and {b.units.shape[0]} {a.unit}")
        return Estimate(scale * e.value, (scale * e.ci95[0], scale * e.ci95[1]), e.n), how
    ea, eb = a.estimate, b.estimate
    value = eb.value - ea.value
    half_a, half_b = (ea.ci95[1] - ea.ci95[0]) / 2, (eb.ci95[1] - eb.ci95[0]) / 2
    if math.isfinite(half_a) and math.isfinite(half_b):
        half = math.hypot(half_a, half_b)   # independent normal errors: se = half-width / z
        return (Estimate(scale * value, (scale * (value - half), scale * (value + half)), min(ea.n, eb.n)),
                "difference of the two intervals as independent normal errors")
    return Estimate(scale * value, _NAN2, min(ea.n, eb.n)), "no interval: no per-unit data or summary interval"


def _row(claim_id: str, contrast: Estimate | None, detail: str) -> ClaimRow:
    title, sign = CLAIMS[claim_id]
    v = NOT_MEASURED if contrast is None else verdict(contrast, sign)
    return ClaimRow(claim_id, title, contrast, sign, v, detail)


def _missing(claim_id: str, what: str) -> ClaimRow:
    return _row(claim_id, None, f"missing: {what}")


def _two_model_claim(claim_id: str, results: Mapping[str, Mapping[str, Any]], roles: Mapping[str, str],
                     analysis: str, measure: Callable[[Any], _Measure | str | None], *, seed: int,
                     num_resamples: int) -> ClaimRow:
    got: dict[str, _Measure] = {}
    for role in ("cnn", "vit"):
        label = roles.get(role)
        if label is None:
            return _missing(claim_id, f"no model in role {role!r}")
        result = results[label].get(analysis)
        m = None if result is None else measure(result)
        if isinstance(m, str):  # the result exists but cannot measure this contrast (why: m)
            return _row(claim_id, None, f"not measurable: {label} {m}")
        if m is None:
            return _missing(claim_id, f"{analysis} result of {label!r}")
        got[role] = m
    contrast, how = _difference(got["cnn"], got["vit"], seed=seed, num_resamples=num_resamples)
    detail = (f"{roles['vit']} {_fmt(got['vit'].estimate)} vs {roles['cnn']} {_fmt(got['cnn'].estimate)}; "
              f"{how}")
    return _row(claim_id, contrast, detail)


# ---------------------------------------------------------------------------------- per analysis
def _landscape_measure(result: Any) -> _Measure | None:
    from .landscape.grid import LandscapeResult

    if not isinstance(result, LandscapeResult):
        try:
            per_batch = _field(result, "batch_loss_sum")
            correct = _field(result, "batch_correct")
            result = LandscapeResult(
                coordinates=[_floats(c) for c in _field(result, "coordinates")], loss=_floats(_field(result, "loss")),
                nll=_floats(_field(result, "nll")), accuracy=_floats(_field(result, "accuracy")),
                l2_norm=_floats(_field(result, "l2_norm")), l2_coef=float(_field(result, "l2_coef", 0.0)),
                num_samples=int(_field(result, "num_samples", _field(result, "n_samples", 0))),
                batch_loss_sum=None if per_batch is None else _floats(per_batch),
                batch_correct=None if correct is None else _floats(correct),
                batch_sizes=_field(result, "batch_sizes"))
        except (TypeError, ValueError):
            return None
    estimate = result.summary()["border_rise"]
    units = result.border_rise_units()
    if units is None:
        return _Measure(estimate)
    return _Measure(estimate, units[0], units[1], "data batches")


def _ratio_01(t: np.ndarray) -> np.ndarray:
    return t[:, 0] / t[:, 1]


def _ratio_23(t: np.ndarray) -> np.ndarray:
    return t[:, 2] / t[:, 3]


def _max_eigen_measure(key: str) -> Callable[[Any], _Measure | None]:
    def measure(result: Any) -> _Measure | None:
        from .curvature.max_eigen import MaxEigenvalueSpectrumResult

        if not isinstance(result, MaxEigenvalueSpectrumResult):
            values = _field(result, "eigenvalues")
            if values is None:
                return None
            import torch

            v = torch.as_tensor(_floats(values))
            num_hvp = _field(result, "num_hvp", _field(result, "n_hvp", 0))  # n_hvp: JSON written before 16.6
            result = MaxEigenvalueSpectrumResult(v, torch.zeros_like(v), torch.ones_like(v, dtype=torch.bool),
                                                 float("nan"), float("nan"), int(_field(result, "batch_size", 0)),
                                                 str(_field(result, "which", "LM")), int(num_hvp))
        estimate = result.summary(quantiles=())[key]
        stat = _ratio_01 if key == "negative_fraction" else _ratio_23
        return _Measure(estimate, result.per_batch_totals(), stat, "mini-batches")
    return measure


def _fourier_last_high(result: Any) -> _Measure | str | None:
    """Δ log amplitude at the highest frequency of the last latent. Units: per batch b the rows
    [n_b·Δ_b, n_b] (Δ_b from that batch's own mean log amplitude, `batch_log_amplitude`), whose pooled
    ratio is the batch-size-weighted mean = the result's value. A last latent with only the zero
    frequency (a 1x1 or 2x2 map) has Δ = 0 by construction: that is no measurement (a reason is returned)."""
    delta = _field(result, "delta_log_amplitude")
    if not delta:
        return None
    if len(_floats(delta[-1])) < 2:
        return "last block's feature map has only the zero frequency (map too small for a Fourier contrast)"
    summary = _summary(result)
    last = float(_floats(delta[-1])[-1])
    estimate = summary.get("high_frequency/last") or Estimate(last, _NAN2, int(_field(result, "num_batches", 0) or 1))
    per_batch = _field(result, "batch_log_amplitude")
    sizes = _field(result, "batch_sizes")
    if per_batch and sizes and len(per_batch[-1]) == len(sizes) >= 2:
        amp = _floats(per_batch[-1])                           # (num_batches, K) of the last latent
        w = np.asarray(sizes, dtype=np.float64)
        units = np.stack([w * (amp[:, -1] - amp[:, 0]), w], axis=1)
        return _Measure(estimate, units, _ratio_01, "data batches")
    return _Measure(estimate)


def _correct_rows(x: Any) -> np.ndarray:
    """Per-image correctness: a "0"/"1" string (as NoiseRobustnessResult stores it) or 0/1 numbers."""
    if isinstance(x, str):
        return np.frombuffer(x.encode("ascii"), dtype=np.uint8) == ord("1")
    return _floats(x) > 0.5


def _robustness_measure(result: Any) -> _Measure | None:
    """Mean ΔAcc over f >= 0.6π in percent. Units: per image d_i = mean over those f of noisy − clean
    correctness (`NoiseRobustnessResult.per_image_delta`) when the per-image record is there, paired
    over the same images between models; else the result's summary "delta_accuracy/high"."""
    freqs = _field(result, "freqs")
    if not freqs:
        return None
    high = np.asarray(freqs, dtype=np.float64) >= HIGH_FREQUENCY - 1e-12
    if not high.any():
        return None
    clean, noisy = _field(result, "clean_correct"), _field(result, "noisy_correct")
    summary = _summary(result)
    if (clean is not None and len(clean) and noisy is not None and len(noisy) == len(freqs)
            and all(len(r) for r in noisy)):
        c = _correct_rows(clean).astype(np.float64)
        rows = np.stack([_correct_rows(r) for r in noisy]).astype(np.float64)[high]
        d = 100.0 * (rows.mean(0) - c)
        units = np.stack([d, np.ones_like(d)], axis=1)
        estimate = summary.get("delta_accuracy/high") or _bootstrap_mean(units)
        return _Measure(estimate, units, _ratio_01, "test images")
    if "delta_accuracy/high" in summary:
        return _Measure(summary["delta_accuracy/high"])
    delta = _floats(_field(result, "delta_accuracy"))[high]
    return _Measure(Estimate(float(delta.mean()), _NAN2, int(_field(result, "num_samples", 0) or 1)))


def _bootstrap_mean(units: np.ndarray) -> Estimate:
    return bootstrap_interval(units, _ratio_01, pooled=True)


# -------------------------------------------------------------------------- per-block sign counts
BLOCK_KINDS = {"msa": ("msa",), "conv": ("conv", "mlp")}


def _block_changes(result: Any, values: Sequence[float]) -> list[tuple[str, float]]:
    """(kind, value[i] − value[i−1]) for every MSA/Conv/MLP latent i >= 1 (stem and down-sampling
    latents are not counted as blocks but are the predecessor of the next one)."""
    kinds = list(_field(result, "kinds") or [])
    out = []
    for i in range(1, min(len(kinds), len(values))):
        if kinds[i] in ("msa", "conv", "mlp") and math.isfinite(values[i]) and math.isfinite(values[i - 1]):
            out.append((kinds[i], float(values[i] - values[i - 1])))
    return out


def _sign_count_row(claim_id: str, per_model: dict[str, list[tuple[str, float]]], kinds: tuple[str, ...],
                    sign: int, what: str) -> ClaimRow:
    hits, total, parts = 0, 0, []
    for label, changes in per_model.items():
        sel = [c for k, c in changes if k in kinds]
        if sel:
            h = sum(1 for c in sel if c * sign > 0)
            hits, total = hits + h, total + len(sel)
            parts.append(f"{label} {h}/{len(sel)}")
    if total == 0:
        return _missing(claim_id, f"{what} results with {'/'.join(kinds)} blocks")
    w = wilson_interval(hits, total)
    contrast = Estimate(w.value - 0.5, (w.ci95[0] - 0.5, w.ci95[1] - 0.5), total)
    word = "lower" if sign < 0 else "raise"
    return _row(claim_id, contrast, f"{hits}/{total} {'/'.join(kinds)} blocks {word} it ({', '.join(parts)}); "
                                    f"Wilson interval of the fraction, minus 1/2")


def _role_results(results: Mapping[str, Mapping[str, Any]], roles: Mapping[str, str],
                  analysis: str) -> dict[str, Any]:
    out = {}
    for role in ROLES:
        label = roles.get(role)
        if label is not None and results[label].get(analysis) is not None:
            out[label] = results[label][analysis]
    return out


def _fourier_block_rows(results, roles) -> list[ClaimRow]:
    per_model = {}
    for label, r in _role_results(results, roles, "fourier").items():
        delta = _field(r, "delta_log_amplitude") or []
        # a latent with only the zero frequency has Δ = 0 by construction: not a value (its block is skipped)
        per_model[label] = _block_changes(r, [float(_floats(d)[-1]) if len(d) >= 2 else math.nan for d in delta])
    return [_sign_count_row("C4.msa", per_model, BLOCK_KINDS["msa"], -1, "fourier"),
            _sign_count_row("C4.conv", per_model, BLOCK_KINDS["conv"], +1, "fourier")]


def _variance_rows(results, roles) -> list[ClaimRow]:
    per_model = {}
    for label, r in _role_results(results, roles, "variance").items():
        per_model[label] = _block_changes(r, list(_floats(_field(r, "variance") or [])))
    rows = [_sign_count_row("C6.msa", per_model, BLOCK_KINDS["msa"], -1, "variance"),
            _sign_count_row("C6.conv", per_model, BLOCK_KINDS["conv"], +1, "variance")]
    label = roles.get("cnn")
    r = None if label is None else results[label].get("variance")
    if r is None:
        rows.append(_missing("C6.stage", "variance result of the cnn role"))
        return rows
    names = list(_field(r, "names") or [])
    values = _floats(_field(r, "variance") or [])
    stages = _stages(r, names)
    peaks, total = 0, 0
    for stage in dict.fromkeys(s for s in stages if s is not None):
        idx = [i for i, s in enumerate(stages) if s == stage]
        if len(idx) >= 2:
            total += 1
            peaks += int(int(np.nanargmax(values[idx])) == len(idx) - 1)
    if total == 0:
        rows.append(_missing("C6.stage", f"stages with >= 2 latents in {label!r}'s variance result"))
        return rows
    w = wilson_interval(peaks, total)
    rows.append(_row("C6.stage", Estimate(w.value - 0.5, (w.ci95[0] - 0.5, w.ci95[1] - 0.5), total),
                     f"{label}: variance peaks at the last block in {peaks}/{total} stages; Wilson, minus 1/2"))
    return rows


# ----------------------------------------------------------------------------------------- CKA
def _as_cka(result: Any) -> Any:
    from .features.cka import CKAResult

    if isinstance(result, CKAResult):
        return result
    names = {f.name for f in dataclasses.fields(CKAResult)}
    return CKAResult(**{k: v for k, v in dict(result).items() if k in names})


def _restricted(result: Any, keep: list[int]) -> Any:
    """The CKA result on the latents `keep` only (rows and columns, per-batch pieces too)."""
    k = np.asarray(keep)
    names = [result.names_a[i] for i in keep]
    kinds = [result.kinds_a[i] for i in keep]
    matrix = np.asarray(_floats(result.matrix))[np.ix_(k, k)].tolist()
    pieces = {}
    if result.num_batches and len(result.batch_hsic_ab):
        pieces = {"batch_hsic_ab": _floats(result.batch_hsic_ab)[:, k][:, :, k].tolist(),
                  "batch_hsic_aa": _floats(result.batch_hsic_aa)[:, k].tolist(),
                  "batch_hsic_bb": _floats(result.batch_hsic_bb)[:, k].tolist()}
    return dataclasses.replace(result, names_a=names, names_b=names, kinds_a=kinds, kinds_b=kinds, matrix=matrix,
                               matrix_ci95=[], stages=None, **pieces)


def _cka_row(claim_id: str, role: str, results, roles, *, seed: int, num_resamples: int) -> ClaimRow:
    """Mean CKA within a stage minus between stages, over pairs of distinct latents that belong to
    a stage (`stage_of` of the latent names, or the result's `stages`; the stem is no stage), with
    the interval of `CKAResult.stage_means` (one pooled bootstrap over batches)."""
    label = roles.get(role)
    if label is None:
        return _missing(claim_id, f"no model in role {role!r}")
    r = results[label].get("cka")
    if r is None:
        return _missing(claim_id, f"cka result of {label!r}")
    try:
        r = _as_cka(r)
    except TypeError:
        return _missing(claim_id, f"a readable cka result of {label!r}")
    names = list(r.names_a)
    stages = _stages(r, names)
    keep = [i for i, st in enumerate(stages) if st is not None]
    kept = [stages[i] for i in keep]
    if names != list(r.names_b) or len(set(kept)) < 2 or len(kept) == len(set(kept)):
        return _missing(claim_id, f"{label!r}'s own CKA over >= 2 stages (latent names with stage prefixes)")
    sub = dataclasses.replace(_restricted(r, keep), bootstrap_seed=seed, num_resamples=num_resamples)
    if sub.num_batches and len(sub.batch_hsic_ab):
        means = sub.stage_means(kept)
        contrast = means["cka/within_minus_between"]
        within, between = means["cka/within_stage"].value, means["cka/between_stage"].value
        how = f"bootstrap over {sub.num_batches} batches"
    else:
        m = _floats(sub.matrix)
        lab = np.asarray(kept, dtype=object)
        same = lab[:, None] == lab[None, :]
        within = float(m[same & ~np.eye(len(lab), dtype=bool)].mean())
        between = float(m[~same].mean())
        contrast = Estimate(within - between, _NAN2, int(sub.num_batches or 1))
        how = "no interval: the CKA result carries no per-batch HSIC"
    return _row(claim_id, contrast, f"{label}: within {within:.3g} vs between {between:.3g} "
                                    f"({len(set(kept))} stages, {len(kept)} latents); {how}")


# ------------------------------------------------------------------------------------ accuracy
def _accuracy_units(acc: Any) -> tuple[np.ndarray, bool] | None:
    """Per-image 0/1 correctness and whether it is genuinely per image (pairable)."""
    if acc is None:
        return None
    if isinstance(acc, Estimate) or (isinstance(acc, Mapping) and "value" in acc):
        e = acc if isinstance(acc, Estimate) else Estimate.from_dict(acc)
        correct = int(round(e.value / 100.0 * e.n))       # an accuracy Estimate is in percent
        return np.r_[np.ones(correct), np.zeros(e.n - correct)], False
    if isinstance(acc, (tuple, list)) and len(acc) == 2 and all(np.ndim(x) == 0 for x in acc):
        correct, n = int(acc[0]), int(acc[1])
        if not 0 <= correct <= n or n < 1:
            raise ValueError(f"accuracy: expected (correct, n) with 0 <= correct <= n, got {acc!r}")
        return np.r_[np.ones(correct), np.zeros(n - correct)], False
    arr = _floats(acc).reshape(-1)
    if arr.size == 0 or not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError("accuracy: expected an Estimate (percent), (correct, n) or per-image 0/1 correctness")
    return arr, True


def _accuracy_row(results, roles, *, seed: int, num_resamples: int) -> ClaimRow:
    got = {}
    for role in ("alternet", "cnn", "vit"):
        label = roles.get(role)
        if label is None:
            return _missing("C8", f"no model in role {role!r}")
        units = _accuracy_units(results[label].get("accuracy"))
        if units is None:
            return _missing("C8", f"accuracy of {label!r}")
        got[role] = units
    arrays = [got[r][0] for r in ("alternet", "cnn", "vit")]
    paired = all(got[r][1] for r in got) and len({a.size for a in arrays}) == 1
    means = [100.0 * a.mean() for a in arrays]
    value = min(means[0] - means[1], means[0] - means[2])
    if paired:
        idx = [bootstrap_indices(arrays[0].size, num_resamples, seed)] * 3
        how = f"paired bootstrap over the same {arrays[0].size} test images"
    else:
        idx = [bootstrap_indices(a.size, num_resamples, seed + k) for k, a in enumerate(arrays)]
        how = "independent bootstrap per model (no per-image correctness on the same images)"
    reps = [100.0 * a[i].mean(1) for a, i in zip(arrays, idx)]
    diffs = np.minimum(reps[0] - reps[1], reps[0] - reps[2])
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    contrast = Estimate(float(value), (float(lo), float(hi)), min(a.size for a in arrays))
    detail = ", ".join(f"{roles[r]} {m:.3g}%" for r, m in zip(("alternet", "cnn", "vit"), means)) + f"; {how}"
    return _row("C8", contrast, detail)


# ----------------------------------------------------------------------------------------- main
def evaluate_claims(results: Mapping[str, Mapping[str, Any]], *, roles: Mapping[str, str],
                    seed: int = 0, num_resamples: int = 2000) -> ClaimsResult:
    """Evaluate C1–C8 of docs/methods.md §5 on the results of several models.

    Args:
        results: model label -> {"landscape", "max_eigen", "fourier", "variance", "cka", "robustness",
            "accuracy"}: result objects (or their `to_dict()` JSON); any may be absent. "accuracy" is
            an Estimate in percent, (correct, n), or per-image 0/1 correctness (paired across models
            when all three have the same length: the same test images in the same order). "cka" is
            the model's own layer × layer CKA.
        roles: "cnn" / "vit" / "alternet" -> a label of `results` (a role may be left out: the
            claims that need it are "not measured").
        seed, num_resamples: the bootstrap's (fixed) seed and size: same inputs -> same digits.

    Returns: ClaimsResult with one ClaimRow per claim (see CLAIMS for ids, titles, expected signs).
    """
    if not isinstance(results, Mapping) or not all(isinstance(v, Mapping) for v in results.values()):
        raise TypeError("results: expected a dict model label -> dict analysis name -> result")
    if not isinstance(roles, Mapping):
        raise TypeError(f"roles: expected a dict role -> model label, got {type(roles).__name__}")
    for role, label in roles.items():
        if role not in ROLES:
            raise ValueError(f"roles: unknown role {role!r}; expected some of {ROLES}")
        if label not in results:
            raise ValueError(f"roles[{role!r}] = {label!r} is not a label of results ({sorted(results)})")
    if not isinstance(num_resamples, int) or num_resamples < 100:
        raise ValueError(f"num_resamples: expected an int >= 100, got {num_resamples!r}")
    kw = {"seed": seed, "num_resamples": num_resamples}
    rows = [
        _two_model_claim("C1", results, roles, "landscape", _landscape_measure, **kw),
        _two_model_claim("C2", results, roles, "max_eigen", _max_eigen_measure("negative_fraction"), **kw),
        _two_model_claim("C3", results, roles, "max_eigen", _max_eigen_measure("positive_mean"), **kw),
        _two_model_claim("C4", results, roles, "fourier", _fourier_last_high, **kw),
        *_fourier_block_rows(results, roles),
        _two_model_claim("C5", results, roles, "robustness", _robustness_measure, **kw),
        *_variance_rows(results, roles),
        _cka_row("C7.cnn", "cnn", results, roles, **kw),
        _cka_row("C7.alternet", "alternet", results, roles, **kw),
        _accuracy_row(results, roles, **kw),
    ]
    return ClaimsResult(rows=rows, roles=dict(roles))

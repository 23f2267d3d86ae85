"""From the library's result objects to the CLI's JSON: every result file holds

    {"analysis", "model", "model_source", "data", "settings", "summary", "plot", "result", ...}

where `result` is the library's own `.to_dict()`, `summary` the few key numbers the report tabulates
and `plot` the arrays the figures (per model and side by side in the report) are drawn from. This is
the only module that reads fields of the library's result classes.
"""
from __future__ import annotations

import math
from typing import Any

import torch

_MISSING = object()


def get(result: Any, *names: str, default: Any = _MISSING) -> Any:
    """The first of `names` that `result` has as an attribute or as a key of its `.to_dict()`."""
    for name in names:
        if hasattr(result, name):
            return getattr(result, name)
    if hasattr(result, "to_dict"):
        data = result.to_dict()
        for name in names:
            if name in data:
                return data[name]
    if isinstance(result, dict):
        for name in names:
            if name in result:
                return result[name]
    if default is _MISSING:
        raise RuntimeError(f"{type(result).__name__} has none of the fields {list(names)} "
                           f"(the CLI and the library disagree; please report)")
    return default


def floats(value: Any) -> Any:
    """Tensors/arrays/lists -> (nested) lists of floats; scalars -> float."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double()
        return value.tolist() if value.ndim else float(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [floats(v) for v in value]
    if value is None:
        return None
    return float(value)


def flat(value: Any) -> list[float]:
    out: list[float] = []

    def walk(v):
        if isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif v is not None:
            out.append(float(v))

    walk(floats(value))
    return out


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


# ------------------------------------------------------------------------------------- hessian
def hessian_spectrum(result) -> tuple[dict, dict]:
    eig = flat(get(result, "eigenvalues"))
    res = flat(get(result, "residuals", default=[]))
    summary = {"top eigenvalue": eig[0] if eig else None,
               "eigenvalues": eig,
               "max residual": max(res) if res else None,
               "HVPs": get(result, "n_hvp", default=None)}
    return summary, {"eigenvalues": eig, "residuals": res}


def hessian_trace(result) -> tuple[dict, dict]:
    value = floats(get(result, "trace", "value", "estimate"))
    stderr = floats(get(result, "stderr", "std_error", "standard_error", default=None))
    summary = {"trace": value, "std. error": stderr, "HVPs": get(result, "n_hvp", default=None)}
    return summary, {"trace": value, "stderr": stderr}


def hessian_density(result) -> tuple[dict, dict]:
    nodes = flat(get(result, "nodes", "ritz_values"))
    weights = flat(get(result, "weights"))
    lo, hi = min(nodes), max(nodes)
    pad = 0.05 * max(hi - lo, 1e-6)
    grid = torch.linspace(lo - pad, hi + pad, 400, dtype=torch.float64)
    sigma = max(1e-6, 0.01 * (hi - lo + 2 * pad))
    density = result.density(grid, sigma) if hasattr(result, "density") else None
    dens = flat(density) if density is not None else []
    total = sum(w for n, w in zip(nodes, weights) if n < 0)
    summary = {"min node": lo, "max node": hi,
               "negative mass": total / max(sum(weights), 1e-30) if weights else None}
    return summary, {"grid": grid.tolist(), "density": dens, "nodes": nodes, "weights": weights}


def max_eigen(result) -> tuple[dict, dict]:
    values = flat(get(result, "eigenvalues", "values"))
    neg = get(result, "negative_fraction", default=None)
    pos = get(result, "positive_mean", default=None)
    finite = _finite(values)
    if neg is None and finite:
        neg = sum(v < 0 for v in finite) / len(finite)
    if pos is None:
        positives = [v for v in finite if v > 0]
        pos = sum(positives) / len(positives) if positives else None
    summary = {"negative fraction": floats(neg), "positive mean": floats(pos),
               "max eigenvalue": max(finite) if finite else None,
               "min eigenvalue": min(finite) if finite else None,
               "values": len(values)}
    return summary, {"values": values}


# ----------------------------------------------------------------------------------- landscape
def landscape(result) -> tuple[dict, dict]:
    loss = floats(get(result, "loss", "losses"))
    acc = floats(get(result, "accuracy", "acc", default=None))
    coords = floats(get(result, "coordinates", "coords", "alphas"))
    dims = 2 if loss and isinstance(loss[0], list) else 1
    values = flat(loss)
    finite = _finite(values)
    if dims == 1:
        center = loss[len(loss) // 2]
        border = [loss[0], loss[-1]]
    else:
        n = len(loss)
        center = loss[n // 2][len(loss[0]) // 2]
        border = loss[0] + loss[-1] + [row[0] for row in loss[1:-1]] + [row[-1] for row in loss[1:-1]]
    border = _finite(flat(border))
    summary = {"centre loss": center, "min loss": min(finite) if finite else None,
               "max loss": max(finite) if finite else None,
               "mean rise at border": (sum(border) / len(border) - center) if border else None}
    if acc is not None:
        accs = _finite(flat(acc))
        summary["centre accuracy"] = (acc[len(acc) // 2] if dims == 1 else
                                      acc[len(acc) // 2][len(acc[0]) // 2])
        summary["min accuracy"] = min(accs) if accs else None
    return summary, {"dims": dims, "coords": coords, "loss": loss, "accuracy": acc}


# ------------------------------------------------------------------------------------ features
def _layers(result) -> tuple[list[str], list[str], list[float]]:
    names = list(get(result, "names", "layers", "layer_names"))
    kinds = get(result, "kinds", default=None)
    if isinstance(kinds, dict):
        kinds = [kinds.get(n, "") for n in names]
    kinds = list(kinds) if kinds is not None else [""] * len(names)
    depth = get(result, "depth", "normalized_depth", "depths", default=None)
    if depth is None:
        depth = [i / max(1, len(names) - 1) for i in range(len(names))]
    return names, kinds, flat(depth)


def fourier(result) -> tuple[dict, dict]:
    names, kinds, depth = _layers(result)
    delta = floats(get(result, "delta_log_amplitude"))
    delta = [flat(d) for d in delta]
    freqs = get(result, "freqs", "frequencies", default=None)
    if freqs is None:  # k/(n/2)*pi with k = 0..K-1 as in docs/methods.md §3a, per layer
        freqs = [[math.pi * k / max(1, len(d) - 1) if len(d) > 1 else 0.0 for k in range(len(d))] for d in delta]
    else:
        freqs = floats(freqs)
        if freqs and not isinstance(freqs[0], list):
            freqs = [freqs] * len(delta)
    high = [d[-1] if d else None for d in delta]
    finite = _finite(high)
    summary = {"dlogamp at pi, last block": high[-1] if high else None,
               "dlogamp at pi, mean": sum(finite) / len(finite) if finite else None,
               "dlogamp at pi, min": min(finite) if finite else None,
               "layers": len(names)}
    return summary, {"names": names, "kinds": kinds, "depth": depth, "freqs": freqs, "delta": delta, "high": high}


def variance(result) -> tuple[dict, dict]:
    names, kinds, depth = _layers(result)
    var = flat(get(result, "variance", "variances", "values"))
    finite = _finite(var)
    msa_drops = [var[i] - var[i - 1] for i in range(1, len(var)) if kinds[i] == "msa"]
    summary = {"variance, last block": var[-1] if var else None,
               "variance, max": max(finite) if finite else None,
               "depth of max": depth[var.index(max(finite))] if finite else None,
               "MSA blocks lowering variance": (f"{sum(d < 0 for d in msa_drops)}/{len(msa_drops)}"
                                                if msa_drops else None)}
    return summary, {"names": names, "kinds": kinds, "depth": depth, "variance": var}


def cka(result) -> tuple[dict, dict]:
    matrix = floats(get(result, "matrix", "cka"))
    names_a = list(get(result, "names_a", "layers_a", "names", default=[]))
    names_b = list(get(result, "names_b", "layers_b", default=names_a))
    n = len(matrix)
    m = len(matrix[0]) if n else 0
    off = [matrix[i][j] for i in range(n) for j in range(m) if i != j]
    adjacent = [matrix[i][i + 1] for i in range(min(n, m) - 1)]
    summary = {"mean CKA": sum(off) / len(off) if off else None,
               "mean adjacent-layer CKA": sum(adjacent) / len(adjacent) if adjacent else None,
               "first-last CKA": matrix[0][m - 1] if n and m else None,
               "shape": [n, m]}
    return summary, {"matrix": matrix, "names_a": names_a, "names_b": names_b}


def robustness(result, freqs_pi: list[float]) -> tuple[dict, dict]:
    delta = flat(get(result, "delta_acc", "delta_accuracy", "delta"))
    clean = floats(get(result, "clean_accuracy", "clean_acc", "accuracy", default=None))
    freqs = get(result, "freqs", "frequencies", default=None)
    freqs = [f / math.pi for f in flat(freqs)] if freqs is not None else list(freqs_pi)
    summary = {"clean accuracy": clean,
               "dAcc at lowest freq": delta[0] if delta else None,
               "dAcc at highest freq": delta[-1] if delta else None,
               "dAcc mean": sum(delta) / len(delta) if delta else None}
    return summary, {"freqs_pi": freqs, "delta_acc": delta, "clean_accuracy": clean}


# ------------------------------------------------------------------------------------ training
def training(result) -> tuple[dict, dict]:
    history = get(result, "history", "metrics", "log", default=None)
    plot: dict[str, list] = {}
    if isinstance(history, list) and history and isinstance(history[0], dict):
        keys = sorted({k for row in history for k, v in row.items() if isinstance(v, (int, float))})
        plot = {k: [row.get(k) for row in history] for k in keys}
    elif isinstance(history, dict):
        plot = {k: flat(v) for k, v in history.items() if isinstance(v, (list, tuple, torch.Tensor))}
    summary = {}
    for label, names in (("epochs", ("epochs_completed",)),
                         ("seconds", ("elapsed_s",))):
        value = get(result, *names, default=None)
        if isinstance(value, (list, tuple)) and value:
            value = value[-1]
        if isinstance(value, torch.Tensor):
            value = float(value)
        if isinstance(value, (int, float)) or value is None:
            summary[label] = value
    for key, col in (("train loss", "train_loss"), ("train accuracy (%)", "train_acc"),  # train reports percent
                     ("test loss", "test_loss"), ("test accuracy (%)", "test_acc")):
        series = [v for v in plot.get(col, []) if v is not None]
        summary[key] = series[-1] if series else None
    summary["stopped early"] = bool(get(result, "stopped_early", default=False))
    return summary, plot

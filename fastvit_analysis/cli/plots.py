"""Figures in the paper's style, drawn from the `plot` part of the CLI's JSON results.

Every function takes `entries`, a list of (model label, plot data) pairs: one entry for a
subcommand's own figure, several for the report's side-by-side comparison. Needs only matplotlib.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import cm  # noqa: E402

Entries = Sequence[tuple[str, dict[str, Any]]]
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _shade(ax, depth: list[float], kinds: list[str]) -> None:
    """Shade MSA blocks grey and down-sampling blocks light blue, as in the paper's Fig. 9."""
    if len(depth) < 2:
        return
    half = 0.5 * (depth[1] - depth[0]) if len(depth) > 1 else 0.01
    for d, k in zip(depth, kinds):
        if k == "msa":
            ax.axvspan(d - half, d + half, color="0.85", lw=0, zorder=0)
        elif k == "downsample":
            ax.axvspan(d - half, d + half, color="#cfe2f3", lw=0, zorder=0)


# ---------------------------------------------------------------------------------- hessian
def max_eigen(entries: Entries):
    """Paper's Fig. 1c/4: density of the pooled mini-batch top eigenvalues, negative and positive
    ranges in separate panels."""
    fig, (ax_neg, ax_pos) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 2]})
    for i, (label, data) in enumerate(entries):
        values = _finite(data.get("values", []))
        neg = [v for v in values if v < 0]
        pos = [v for v in values if v > 0]
        n = max(1, len(values))
        frac = f"{100 * len(neg) / n:.0f}% neg."
        for ax, part in ((ax_neg, neg), (ax_pos, pos)):
            if part:
                weights = [1.0 / n] * len(part)
                ax.hist(part, bins=30, weights=weights, histtype="step", lw=1.5, color=_color(i),
                        label=f"{label} ({frac})" if ax is ax_pos else None)
    for ax, title in ((ax_neg, "negative eigenvalues"), (ax_pos, "positive eigenvalues")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("max eigenvalue")
        ax.set_yscale("log")
    ax_neg.set_ylabel("density")
    if entries:
        ax_pos.legend(fontsize=8)
    fig.suptitle("Hessian max-eigenvalue spectra (top-k per mini-batch)", fontsize=10)
    fig.tight_layout()
    return fig


def spectrum(entries: Entries):
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (label, data) in enumerate(entries):
        eig = data.get("eigenvalues", [])
        ax.plot(range(1, len(eig) + 1), eig, "o-", color=_color(i), label=label)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue")
    ax.set_title("Top Hessian eigenvalues", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def density(entries: Entries):
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for i, (label, data) in enumerate(entries):
        grid, dens = data.get("grid", []), data.get("density", [])
        if grid and dens:
            ax.plot(grid, [max(d, 1e-12) for d in dens], color=_color(i), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title("Hessian spectral density (SLQ)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def trace(entries: Entries):
    fig, ax = plt.subplots(figsize=(4, 3))
    labels = [label for label, _ in entries]
    values = [float(d.get("trace") or 0.0) for _, d in entries]
    errs = [float(d.get("stderr") or 0.0) for _, d in entries]
    ax.bar(range(len(values)), values, yerr=errs, color=[_color(i) for i in range(len(values))], capsize=4)
    ax.set_xticks(range(len(values)), labels, rotation=20, fontsize=8)
    ax.set_ylabel("Hessian trace")
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------------- landscape
def landscape(entries: Entries, clip: float = 42.0):
    two_d = [(label, d) for label, d in entries if d.get("dims") == 2]
    one_d = [(label, d) for label, d in entries if d.get("dims") != 2]
    panels = len(two_d) + (1 if one_d else 0)
    fig = plt.figure(figsize=(3.6 * max(1, panels), 3.4))
    surfaces = []
    for label, data in two_d:
        loss = data["loss"]
        low = min(_finite([v for row in loss for v in row]) or [0.0])
        surfaces.append([[min(v - low, clip) if isinstance(v, (int, float)) and math.isfinite(v) else clip
                          for v in row] for row in loss])
    top = max([max(max(row) for row in z) for z in surfaces] or [1.0]) or 1.0  # one z scale for all models
    for i, (label, data) in enumerate(two_d):
        ax = fig.add_subplot(1, panels, i + 1, projection="3d")
        coords = data["coords"]
        xs, ys = (coords[0], coords[1]) if isinstance(coords[0], list) else (coords, coords)
        z = surfaces[i]
        import numpy as np

        X, Y = np.meshgrid(xs, ys, indexing="ij")
        ax.plot_surface(X, Y, np.asarray(z), cmap=cm.viridis, vmin=0, vmax=top, linewidth=0, antialiased=True)
        ax.set_zlim(0, top)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("d1", fontsize=8)
        ax.set_ylabel("d2", fontsize=8)
        ax.set_zlabel("loss - min", fontsize=8)
        ax.tick_params(labelsize=7)
    if one_d:
        ax = fig.add_subplot(1, panels, panels)
        for i, (label, data) in enumerate(one_d):
            coords = data["coords"]
            xs = coords[0] if coords and isinstance(coords[0], list) else coords
            ax.plot(xs, data["loss"], color=_color(i), label=label)
        ax.set_xlabel("step along d1")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    fig.suptitle("Loss landscapes (filter-normalised directions)", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------- features
def fourier(entries: Entries):
    """Left panels: Δ log amplitude vs frequency per layer, coloured by depth (one per model);
    right panel: Δ at the highest frequency vs normalised depth for every model."""
    n = len(entries)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.3 * (n + 1), 3.2), squeeze=False)
    axes = axes[0]
    cmap = plt.get_cmap("plasma")
    for i, (label, data) in enumerate(entries):
        ax = axes[i]
        for d, f, delta in zip(data["depth"], data["freqs"], data["delta"]):
            if delta:
                ax.plot([x / math.pi for x in f], delta, color=cmap(0.9 * d), lw=1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("frequency (x pi)")
        if i == 0:
            ax.set_ylabel("Δ log amplitude")
        ax_all = axes[n]
        if n == 1:
            _shade(ax_all, data["depth"], data["kinds"])
        ax_all.plot(data["depth"], data["high"], "o-", ms=3, color=_color(i), label=label)
    axes[n].set_xlabel("normalised depth")
    axes[n].set_ylabel("Δ log amplitude at pi")
    axes[n].legend(fontsize=8)
    fig.suptitle("Relative log amplitude of Fourier-transformed feature maps", fontsize=10)
    fig.tight_layout()
    return fig


def variance(entries: Entries):
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for i, (label, data) in enumerate(entries):
        if len(entries) == 1:
            _shade(ax, data["depth"], data["kinds"])
        ax.plot(data["depth"], data["variance"], "o-", ms=3, color=_color(i), label=label)
        msa = [(d, v) for d, v, k in zip(data["depth"], data["variance"], data["kinds"]) if k == "msa"]
        if msa and len(entries) > 1:
            ax.plot(*zip(*msa), "s", ms=5, mfc="none", color=_color(i))
    ax.set_yscale("log")
    ax.set_xlabel("normalised depth")
    ax.set_ylabel("feature map variance")
    ax.set_title("Feature-map variance (MSA blocks shaded / squares)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cka(entries: Entries):
    n = len(entries)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.3), squeeze=False)
    image = None
    for i, (label, data) in enumerate(entries):
        ax = axes[0][i]
        image = ax.imshow(data["matrix"], origin="lower", vmin=0, vmax=1, cmap="magma")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel("layer")
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="CKA")
    fig.suptitle("Mini-batch CKA between block outputs", fontsize=10)
    return fig


def robustness(entries: Entries):
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (label, data) in enumerate(entries):
        ax.plot(data["freqs_pi"], data["delta_acc"], "o-", color=_color(i), label=label)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("noise frequency (x pi)")
    ax.set_ylabel("Δ accuracy (%)")
    ax.set_title("Robustness to frequency-based noise", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def training(entries: Entries):
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(8, 3))
    for i, (label, data) in enumerate(entries):
        x = data.get("epoch")
        for ax, keys in ((ax_l, ("train_loss", "loss")), (ax_a, ("test_acc", "test_accuracy", "acc"))):
            for key in keys:
                series = data.get(key)
                if series:
                    xs = x if x and len(x) == len(series) else list(range(1, len(series) + 1))
                    ax.plot(xs, series, "o-", ms=3, color=_color(i), label=label)
                    break
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("train loss")
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("test accuracy (%)")
    ax_a.legend(fontsize=8)
    fig.tight_layout()
    return fig


FIGURES = {"max_eigen": max_eigen, "hessian_spectrum": spectrum, "hessian_density": density,
           "hessian_trace": trace, "landscape": landscape, "fourier": fourier, "variance": variance,
           "cka": cka, "robustness": robustness, "train": training}

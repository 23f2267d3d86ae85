"""The figure layer (fastvit_analysis.plot): every function draws one result and a {label: result} dict,
draws into given Axes, leaves the user's matplotlib backend alone, and shows intervals where the result
has them (and only there). The CLI holds no figure code."""
import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from fastvit_analysis import plot
from fastvit_analysis.landscape.grid import LandscapeResult
from tests.result_cases import cases

ROOT = Path(__file__).resolve().parents[2]


def _mixed_spectrum():
    """20 mini-batches x 5 signed top eigenvalues (both panels and both summary numbers populated)."""
    import torch

    from fastvit_analysis.curvature.max_eigen import MaxEigenvalueSpectrumResult

    v = torch.as_tensor(np.random.default_rng(0).normal(0.3, 1.0, size=(20, 5)))
    return MaxEigenvalueSpectrumResult(v, torch.zeros_like(v), torch.ones_like(v, dtype=torch.bool),
                                 float((v < 0).double().mean()), float(v[v > 0].mean()), 16, "LM", 0)


def _line():
    a = np.linspace(-1, 1, 5)
    return LandscapeResult([a], a ** 2, a ** 2, np.full(5, np.nan), np.zeros(5))


# (function, result, axes to pass as ax=: count, projection)
FUNCTIONS = [
    (plot.curvature.spectrum, "HessianSpectrumResult", 1, None),
    (plot.curvature.density, "HessianDensityResult", 1, None),
    (plot.curvature.trace, "HessianTraceResult", 1, None),
    (plot.curvature.max_eigen, "MaxEigenvalueSpectrumResult", 4, None),
    (plot.curvature.max_eigen, _mixed_spectrum, 4, None),
    (plot.curvature.max_eigen_summary, _mixed_spectrum, 2, None),
    (plot.curvature.blocks, "BlockSpectraResult", 1, None),
    (plot.landscape.landscape, "LandscapeResult", 1, "3d"),
    (plot.landscape.contour, "LandscapeResult", 1, None),
    (plot.landscape.surface, "LandscapeResult", 1, "3d"),
    (plot.landscape.curve, _line, 1, None),
    (plot.landscape.border_rise, "LandscapeResult", 1, None),
    (plot.landscape.trajectory, "TrajectoryResult", 1, None),
    (plot.features.fourier, "FourierResult", 1, None),
    (plot.features.high_frequency, "FourierResult", 1, None),
    (plot.features.variance, "VarianceResult", 1, None),
    (plot.features.cka, "CKAResult", 1, None),
    (plot.features.robustness, "NoiseRobustnessResult", 1, None),
    (plot.features.shape_bias, "ShapeBiasResult", 1, None),
    (plot.training.curves, "TrainResult", 2, None),
]
IDS = [f"{fn.__module__.rsplit('.', 1)[1]}.{fn.__name__}" for fn, *_ in FUNCTIONS]


def _result(case):
    return case() if callable(case) else cases()[case]


@pytest.mark.parametrize("fn, case, panels, projection", FUNCTIONS, ids=IDS)
def test_single_dict_and_ax(fn, case, panels, projection, tmp_path):
    r = _result(case)
    single = fn(r)
    assert isinstance(single, Figure) and single.axes
    both = fn({"model a": r, "model b": r})
    assert isinstance(both, Figure)
    both.savefig(tmp_path / "both.png")
    assert (tmp_path / "both.png").stat().st_size > 1000
    host, axes = plot.style.figure(panels, projection=projection)
    drawn = fn(r, ax=axes if panels > 1 else axes[0])
    assert drawn is host
    with pytest.raises(TypeError, match="result"):
        fn(object())


def test_every_cli_analysis_has_its_figure_and_the_result_classes_plot_through_it():
    assert set(plot.FIGURES) >= {"hessian_spectrum", "hessian_density", "hessian_trace", "max_eigen",
                                 "block_spectra", "landscape", "fourier", "variance", "cka", "robustness",
                                 "shape_bias", "train"}
    for name in ("HessianSpectrumResult", "HessianTraceResult", "BlockSpectraResult", "LandscapeResult",
                 "TrajectoryResult", "FourierResult", "VarianceResult", "CKAResult", "NoiseRobustnessResult",
                 "ShapeBiasResult", "TrainResult"):
        assert isinstance(cases()[name].plot(), Figure), name
    fig, (neg, pos) = cases()["MaxEigenvalueSpectrumResult"].plot()
    assert neg.figure is fig and len(fig.axes) == 4
    fig, ax = cases()["HessianDensityResult"].plot()
    assert ax is fig.axes[0]


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_intervals_are_drawn_where_the_result_has_them():
    noise = cases()["NoiseRobustnessResult"]
    assert noise.has_per_image and noise.delta_accuracy_ci95
    fig = plot.features.robustness({"a": noise, "b": noise})
    (bars, _) = _errorbars(fig.axes[0])
    lo, hi = np.asarray(noise.delta_accuracy_ci95).T
    segments = bars.lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 1] for s in segments], np.stack([lo, hi], axis=1))
    # the max-eigen summary panels: negative fraction and positive mean with their bootstrap intervals
    spectrum = _mixed_spectrum()
    fig = plot.curvature.max_eigen(spectrum)
    est = spectrum.summary(quantiles=())
    for ax, key in ((fig.axes[2], "negative_fraction"), (fig.axes[3], "positive_mean")):
        (bar,) = _errorbars(ax)
        np.testing.assert_allclose(bar.lines[2][0].get_segments()[0][:, 1], est[key].ci95)
    assert len(_bands(fig.axes[0])) == len(_bands(fig.axes[1])) == 1  # bootstrap over the 20 mini-batches
    assert "[" in fig.axes[0].get_title()  # one unlabelled model: its negative fraction with the interval
    # bands: Fourier Δ and variance per layer (bootstrap over 9 batches), density over 3 probes
    assert _bands(plot.features.fourier(cases()["FourierResult"]).axes[0])
    assert _bands(plot.features.variance(cases()["VarianceResult"]).axes[0])
    assert _bands(plot.curvature.density(cases()["HessianDensityResult"]).axes[0])
    fig = plot.curvature.trace(cases()["HessianTraceResult"])
    (bar,) = _errorbars(fig.axes[0])
    np.testing.assert_allclose(bar.lines[2][0].get_segments()[0][:, 1],
                               cases()["HessianTraceResult"].summary()["trace"].ci95)
    assert _errorbars(plot.features.shape_bias(cases()["ShapeBiasResult"]).axes[0])


def test_no_interval_is_invented():
    noise = cases()["NoiseRobustnessResult"]
    bare = type(noise).from_dict(noise.to_dict() | {"clean_correct": "", "noisy_correct": [],
                                                    "delta_accuracy_ci95": []})
    assert not _errorbars(plot.features.robustness(bare).axes[0])
    variance = cases()["VarianceResult"]
    assert not _bands(plot.features.variance(type(variance).from_dict(
        variance.to_dict() | {"variance_ci95": [[None, None]] * len(variance.variance)})).axes[0])
    density = cases()["HessianDensityResult"]
    one_probe = type(density)(density.nodes[:1], density.weights[:1], density.n_hvp, density.num_params)
    assert not _bands(plot.curvature.density(one_probe).axes[0])


def test_bad_arguments_are_one_line_errors():
    r = cases()["HessianTraceResult"]
    with pytest.raises(TypeError, match=r"result\['b'\]: expected a HessianTraceResult"):
        plot.curvature.trace({"a": r, "b": cases()["HessianSpectrumResult"]})
    with pytest.raises(ValueError, match="at least one"):
        plot.curvature.trace({})
    host, axes = plot.style.figure(2)
    with pytest.raises(ValueError, match="ax: expected 4 Axes"):
        plot.curvature.max_eigen(cases()["MaxEigenvalueSpectrumResult"], ax=axes)
    with pytest.raises(ValueError, match="2-D"):
        plot.landscape.contour(_line())


def test_backend_untouched_and_matplotlib_imported_lazily(tmp_path):
    """In a fresh process: importing the package loads no matplotlib; drawing figures (of results read
    back from JSON, as the report does) keeps the backend the user chose and adds nothing to pyplot."""
    names = {"MaxEigenvalueSpectrumResult": "curvature.max_eigen", "LandscapeResult": "landscape.landscape",
             "FourierResult": "features.fourier", "TrainResult": "training.curves",
             "HessianDensityResult": "curvature.density"}
    (tmp_path / "results.json").write_text(json.dumps({n: cases()[n].to_dict() for n in names}))
    script = f"""
import sys, json
sys.path.insert(0, {str(ROOT)!r})
import fastvit_analysis.plot as plot
assert "matplotlib" not in sys.modules, "import fastvit_analysis.plot imported matplotlib"
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
from fastvit_analysis.common.results import load_result
data = json.loads(open("results.json").read())
for name, fn in {names!r}.items():
    family, function = fn.split(".")
    draw = getattr(getattr(plot, family), function)
    draw({{"a": load_result(data[name]), "b": load_result(data[name])}}).savefig("f.png")
print(json.dumps([matplotlib.get_backend(), plt.get_fignums()]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    backend, fignums = json.loads(done.stdout.strip().splitlines()[-1])
    assert backend == "svg" and fignums == []


def test_cli_imports_no_matplotlib():
    offenders = []
    for path in sorted((ROOT / "fastvit_analysis" / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "matplotlib"]
        assert "matplotlib" not in path.read_text(), path.name  # nor importlib/__import__ by name
    assert offenders == []
    assert not (ROOT / "fastvit_analysis" / "cli" / "plots.py").exists()


def test_pi_ticks_and_depth_shading():
    host, (ax,) = plot.style.figure(1)
    plot.style.pi_ticks(ax, math.pi)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5π", "1.0π"]
    plot.style.shade_kinds(ax, [0.0, 0.5, 1.0], ["embed", "msa", "downsample"])
    assert len(ax.patches) == 2


def test_old_names_delegate_with_a_deprecation_warning():
    import importlib

    import fastvit_analysis.landscape.plot as old_landscape

    with pytest.warns(DeprecationWarning, match="fastvit_analysis.plot.landscape"):
        importlib.reload(old_landscape)
    assert old_landscape.plot_contour is plot.landscape.contour
    from fastvit_analysis.curvature import plot_density, plot_max_eigenvalue_spectrum

    with pytest.warns(DeprecationWarning, match="plot.curvature.max_eigen"):
        fig, (neg, pos) = plot_max_eigenvalue_spectrum(_mixed_spectrum(), bins=6)
    assert neg.figure is fig
    with pytest.warns(DeprecationWarning, match="plot.curvature.density"):
        fig, ax = plot_density(cases()["HessianDensityResult"])
    assert _bands(ax)

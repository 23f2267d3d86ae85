"""Every result class exposes `summary()`: name -> Estimate, JSON {"value", "ci95", "n"} under "summary" of
`to_dict()`, the same digits on a re-run (fixed bootstrap seeds); and the CLI's JSON "summary" is that
summary (plus facts of the run), read from the result's fields (issue 16, item 2)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import fastvit_analysis as fa
from fastvit_analysis.cli import main
from fastvit_analysis.common.intervals import ArrayEstimate, Estimate, wilson_interval
from fastvit_analysis.features.shape_bias import ShapeBiasResult
from fastvit_analysis.training import TrainResult

CE = nn.CrossEntropyLoss()
TINY = ["--device", "cpu", "--no-progress", "--seed", "0", "--model", "demo_resnet"]


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _batches(n=9, size=4, dims=(4,), dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, *dims, generator=g, dtype=dtype), torch.randint(3, (size,), generator=g))
            for _ in range(n)]


def _vit():
    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=3).eval()


def _results():
    """One instance of every result class, from the library's own functions on tiny problems."""
    model, data = _mlp(), _batches()
    one = data[0]
    vit, images = _vit(), _batches(n=8, size=4, dims=(3, 16, 16), dtype=torch.float32)
    checkpoints = [{k: v + 0.05 * torch.randn_like(v) for k, v in model.state_dict().items()} for _ in range(4)]
    return {
        "spectrum": fa.hessian_spectrum(model, CE, one, top_k=2, progress=False),
        "trace": fa.hessian_trace(model, CE, one, num_probes=6, progress=False),
        "density": fa.hessian_density(model, CE, one, num_probes=3, steps=8, progress=False),
        "max_eigen": fa.max_eigenvalue_spectrum(model, CE, one, batch_size=2, top_k=2, progress=False),
        "blocks": fa.block_spectra(model, CE, one, top_k=1, num_probes=3, progress=False),
        "landscape_2d": fa.loss_landscape(model, CE, data, steps=3, progress=False),
        "landscape_1d": fa.loss_landscape(model, CE, data, steps=3, dims=1, progress=False),
        "trajectory": fa.trajectory(checkpoints, CE, data, model=model, steps=3, progress=False),
        "fourier": fa.fourier_analysis(vit, images, progress=False),
        "variance": fa.variance_analysis(vit, images, progress=False),
        "cka": fa.minibatch_cka(vit, images, progress=False),
        "robustness": fa.noise_robustness(vit, images, freqs=[0.1 * math.pi, 0.9 * math.pi], progress=False),
        "shape_bias": ShapeBiasResult(7, 3, 2, [0] * 12),
        "train": TrainResult([{"epoch": 1, "train_loss": 1.2, "train_acc": 40.0, "samples": 64,
                               "test_loss": 1.1, "test_acc": 50.0, "test_samples": 32}], 1),
    }


@pytest.fixture(scope="module")
def results():
    return _results()


def test_every_result_summary_holds_estimates_with_interval_and_count(results):
    for name, result in results.items():
        summary = result.summary()
        assert summary, name
        for key, estimate in summary.items():
            assert isinstance(estimate, (Estimate, ArrayEstimate)), (name, key)
            assert isinstance(estimate.n, int) and estimate.n >= 1, (name, key)
            assert np.shape(estimate.ci95)[-1] == 2, (name, key)
        block = result.to_dict()["summary"]
        assert set(block) == set(summary), name
        for key, d in block.items():
            assert set(d) == {"value", "ci95", "n"}, (name, key)
        json.dumps(block)  # standard JSON (NaN as null)


def test_summaries_are_reproducible(results):
    for name, result in results.items():  # fixed bootstrap seeds: the same digits every time
        assert json.dumps(result.to_dict()["summary"]) == json.dumps(result.to_dict()["summary"]), name


def test_new_summaries_read_their_fields(results):
    blocks = results["blocks"]
    for r, block in enumerate(blocks.blocks):
        e = blocks.summary()[f"{block}/eigenvalue_0"]
        lam, res = float(blocks.eigenvalues[r, 0]), float(blocks.residuals[r, 0])
        assert e.value == lam and e.ci95 == (lam - res, lam + res) and e.n == blocks.num_hvp
        assert blocks.summary()[f"{block}/trace"] == blocks.trace_estimates()[r]
    traj = results["trajectory"]
    s = traj.summary()
    assert s["explained_variance/pc1"].value == pytest.approx(float(traj.explained_variance_ratio[0]))
    assert s["border_rise"] == traj.landscape.summary()["border_rise"]
    train = results["train"].summary()
    assert train["test_accuracy"] == wilson_interval(16, 32, scale=100.0)
    assert train["train_loss"].value == 1.2 and train["train_loss"].n == 64


@pytest.mark.parametrize("argv, name", [
    (["hessian", "--mode", "spectrum", "--top-k", "2", "--max-hvp", "8", "--tol", "1e-2"], "hessian_spectrum"),
    (["hessian", "--mode", "trace", "--num-probes", "3"], "hessian_trace"),
    (["hessian", "--mode", "spectrum", "--per-block", "--top-k", "1", "--max-hvp", "3", "--num-probes", "3"],
     "block_spectra"),
    (["landscape", "--steps", "3", "--num-samples", "8", "--batch-size", "4"], "landscape"),
])
def test_cli_summary_is_the_library_summary(tmp_path, capsys, argv, name):
    assert main([*argv, "--batch-size", "4", "--num-batches", "1", "--out", str(tmp_path), *TINY]
                if argv[0] == "hessian" else [*argv, "--out", str(tmp_path), *TINY]) == 0
    payload = json.loads((tmp_path / f"{name}.json").read_text())
    library = payload["result"]["summary"]
    assert library
    for key, estimate in library.items():
        assert payload["summary"][key] == estimate, key
    line = capsys.readouterr().out
    first = next(iter(library))
    assert f"{first}=" in line  # the printed line shows the estimates with their interval


def test_renamed_counts_warn_and_still_work(results):
    spec = results["spectrum"]
    with pytest.warns(DeprecationWarning, match="num_hvp"):
        assert spec.n_hvp == spec.num_hvp > 0
    assert "num_hvp" in spec.to_dict() and "n_hvp" not in spec.to_dict()
    with pytest.warns(DeprecationWarning, match="num_hvp"):
        again = type(spec)(spec.eigenvalues, spec.residuals, spec.converged, which=spec.which, method=spec.method,
                           tol=spec.tol, num_params=spec.num_params, n_hvp=7)
    assert again.num_hvp == 7
    H = fa.HessianOperator(_mlp(), CE, _batches(n=1)[0])
    H.matmat(torch.zeros(2, H.num_params, dtype=torch.float64))
    with pytest.warns(DeprecationWarning, match="num_hvp"):
        assert H.n_hvp == H.num_hvp == 2


def test_landscape_num_samples_keeps_its_old_name(results):
    land = results["landscape_2d"]
    assert land.num_samples == 9 * 4 and land.to_dict()["num_samples"] == 36 and "n_samples" not in land.to_dict()
    with pytest.warns(DeprecationWarning, match="num_samples"):
        assert land.n_samples == 36


@pytest.mark.parametrize("module", ["fastvit_analysis.curvature", "fastvit_analysis.curvature.spectrum",
                                    "fastvit_analysis.curvature.trace", "fastvit_analysis.curvature.density",
                                    "fastvit_analysis.curvature.max_eigen", "fastvit_analysis.curvature.blocks"])
def test_old_result_class_names_warn_and_are_the_new_classes(module):
    import importlib

    mod = importlib.import_module(module)
    old_new = {"HessianSpectrum": "HessianSpectrumResult", "HessianTrace": "HessianTraceResult",
               "HessianDensity": "HessianDensityResult", "MaxEigenvalueSpectrum": "MaxEigenvalueSpectrumResult",
               "BlockSpectra": "BlockSpectraResult"}
    found = 0
    for old, new in old_new.items():
        if hasattr(mod, new):
            with pytest.warns(DeprecationWarning, match=new):
                assert getattr(mod, old) is getattr(mod, new)
            found += 1
    assert found >= 1
    with pytest.raises(AttributeError):
        _ = mod.NoSuchResult


def test_cli_and_api_share_the_solver_defaults():
    """--which/--tol of `hessian` are the defaults of every API function that takes them; hvp_mode
    defaults to None (auto) everywhere (the CLI has no flag for it)."""
    import inspect

    from fastvit_analysis.cli.main import build_parser

    args = build_parser().parse_args(["hessian", "--model", "demo_resnet"])
    for fn in (fa.hessian_spectrum, fa.max_eigenvalue_spectrum, fa.block_spectra):
        params = inspect.signature(fn).parameters
        assert params["which"].default == args.which == "LM", fn.__name__
        assert params["tol"].default == args.tol == 1e-3, fn.__name__
    for fn in (fa.hessian_spectrum, fa.hessian_trace, fa.hessian_density, fa.max_eigenvalue_spectrum,
               fa.block_spectra):
        assert inspect.signature(fn).parameters["hvp_mode"].default is None, fn.__name__


def test_prefix_tokens_keeps_its_old_name():
    from fastvit_analysis.features.extract import LatentSpec, to_feature_map
    from fastvit_analysis.features.variance import per_map_variance

    z = torch.randn(2, 1 + 16, 3)
    with pytest.warns(DeprecationWarning, match="num_prefix_tokens"):
        old = to_feature_map(z, prefix_tokens=1)
    assert torch.equal(old, to_feature_map(z, num_prefix_tokens=1))
    with pytest.warns(DeprecationWarning, match="num_prefix_tokens"):
        assert torch.equal(per_map_variance(z, prefix_tokens=1), per_map_variance(z, num_prefix_tokens=1))
    with pytest.warns(DeprecationWarning, match="num_prefix_tokens"):
        spec = LatentSpec("a", "a", prefix_tokens=2)
    assert spec.num_prefix_tokens == 2
    with pytest.warns(DeprecationWarning, match="num_prefix_tokens"):
        assert spec.prefix_tokens == 2
    feats = fa.extract_features(_vit(), torch.randn(1, 3, 16, 16))
    with pytest.warns(DeprecationWarning, match="num_prefix_tokens"):
        assert feats.prefix_tokens == feats.num_prefix_tokens
    with pytest.raises(TypeError, match="num_prefix_tokens"):
        to_feature_map(z, prefix_tokens=1, num_prefix_tokens=1)


def test_train_data_keyword_keeps_its_old_name(tmp_path):
    x, y = torch.randn(8, 4), torch.randint(3, (8,))
    kwargs = dict(epochs=1, batch_size=4, mixup=0.0, cutmix=0.0, randaugment=None, crop_flip=False, progress=False)
    def model():
        torch.manual_seed(0)
        m = nn.Linear(4, 3)
        m.num_classes = 3
        return m
    with pytest.warns(DeprecationWarning, match="use data="):
        old = fa.train(model(), train_data=(x, y), **kwargs)
    new = fa.train(model(), data=(x, y), **kwargs)
    assert old.epochs_completed == new.epochs_completed == 1
    assert old.history[0]["train_loss"] == new.history[0]["train_loss"]


def test_attention_backend_speaks_the_ops_vocabulary():
    from fastvit_analysis.attention.fused import resolve_backend
    from fastvit_analysis.ops._backend import BACKENDS as OPS_BACKENDS

    q = k = v = torch.randn(1, 2, 5, 16)
    assert resolve_backend(torch.device("cpu")) == "eager" and "eager" in OPS_BACKENDS
    with pytest.warns(DeprecationWarning, match="backend='eager'"):
        old = fa.fused_attention(q, k, v, backend="torch")
    assert torch.equal(old, fa.fused_attention(q, k, v, backend="eager"))
    with pytest.raises(ValueError, match="backend must be one of"):
        fa.fused_attention(q, k, v, backend="compiled")


def test_per_pass_keeps_its_old_names():
    model, data = _mlp(), _batches(n=2)
    with pytest.warns(DeprecationWarning, match="use per_pass="):
        H = fa.HessianOperator(model, CE, data, vectors_per_pass=3)
    assert H.per_pass == 3
    with pytest.warns(DeprecationWarning, match="per_pass"):
        assert H.vectors_per_pass == 3
    with pytest.warns(DeprecationWarning, match="use per_pass="):
        old = fa.hessian_trace(model, CE, data, num_probes=4, chunk_size=2, progress=False)
    assert old.value == fa.hessian_trace(model, CE, data, num_probes=4, per_pass=2, progress=False).value
    with pytest.warns(DeprecationWarning, match="use per_pass="):
        fa.loss_landscape(model, CE, data, steps=2, dims=1, points_per_pass=2, progress=False)
    with pytest.warns(DeprecationWarning, match="use per_pass="):
        fa.max_eigenvalue_spectrum(model, CE, data[0], batch_size=2, top_k=1, batches_per_pass=2, progress=False)
    with pytest.warns(DeprecationWarning, match="use per_pass="):
        fa.hessian_density(model, CE, data, num_probes=2, steps=4, probes_per_pass=1, progress=False)
    with pytest.warns(DeprecationWarning, match="use per_pass="):
        assert fa.run_sweep(lambda pts: [{"v": p} for p in pts], [1, 2, 3], chunk_size=2,
                            progress=False)[2]["v"] == 3


OLD_NAMES = {"n_hvp", "n_samples", "n_batches", "vectors_per_pass", "probes_per_pass", "batches_per_pass",
             "points_per_pass", "chunk_size", "train_data", "batches", "prefix_tokens"}
PUBLIC_MODULES = ["fastvit_analysis.curvature", "fastvit_analysis.landscape", "fastvit_analysis.features",
                  "fastvit_analysis.training", "fastvit_analysis.sweep", "fastvit_analysis.attention",
                  "fastvit_analysis.ops", "fastvit_analysis.claims", "fastvit_analysis.landscape.grid",
                  "fastvit_analysis.features.extract", "fastvit_analysis.features.variance",
                  "fastvit_analysis.features.shape_bias", "fastvit_analysis.training.result"]


def _public_objects():
    import importlib

    seen = {}
    for name in fa.__all__:
        if name != "__version__":
            seen[f"fastvit_analysis.{name}"] = getattr(fa, name)
    for module in PUBLIC_MODULES:
        mod = importlib.import_module(module)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name, None)
            if callable(obj):
                seen[f"{module}.{name}"] = obj
    from fastvit_analysis.features.extract import to_feature_map
    from fastvit_analysis.features.variance import per_map_variance

    seen["to_feature_map"], seen["per_map_variance"] = to_feature_map, per_map_variance  # not in __all__
    return seen


def test_no_old_name_in_a_public_signature():
    """The vocabulary (docs/api.md "Names"): no public function, constructor or result field uses a
    replaced name (the deprecated aliases live in decorators, which signatures do not show)."""
    import dataclasses
    import inspect

    found = []
    for where, obj in _public_objects().items():
        targets = [obj]
        if inspect.isclass(obj):
            assert obj.__name__ not in {"HessianSpectrum", "HessianTrace", "HessianDensity",
                                        "MaxEigenvalueSpectrum", "BlockSpectra"}, where
            targets = [obj.__init__]
            if dataclasses.is_dataclass(obj):
                found += [f"{where}.{f.name}" for f in dataclasses.fields(obj) if f.name in OLD_NAMES]
        for fn in targets:
            try:
                params = inspect.signature(fn).parameters
            except (TypeError, ValueError):
                continue
            found += [f"{where}({p})" for p in params if p in OLD_NAMES]
    assert not found, found
    assert len(_public_objects()) > 40  # the scan reaches the API

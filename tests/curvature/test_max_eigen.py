"""max_eigenvalue_spectrum against a per-mini-batch loop of dense eigensolves; transform, resume, plot."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fastvit_analysis import hessian_spectrum, max_eigenvalue_spectrum

from .cases import MODELS, batch, dense_hessian, mlp

CE = nn.CrossEntropyLoss()


def lm_top(eigs: torch.Tensor, k: int) -> torch.Tensor:
    return eigs[eigs.abs().argsort(descending=True)][:k]


def test_equals_a_loop_of_dense_eigensolves_per_mini_batch():
    x, y = batch("mlp", n=30)  # 3 mini-batches of 8; the last 6 samples are dropped
    model = mlp()
    res = max_eigenvalue_spectrum(model, CE, [(x[:13], y[:13]), (x[13:], y[13:])], batch_size=8, top_k=3,
                                  tol=1e-8, per_pass=2, progress=False)
    assert res.eigenvalues.shape == (3, 3)
    for i in range(3):
        sl = slice(8 * i, 8 * (i + 1))
        eigs = torch.linalg.eigvalsh(dense_hessian(model, CE, [(x[sl], y[sl])]))
        want = lm_top(eigs, 3)
        assert torch.allclose(res.eigenvalues[i], want, rtol=1e-4), (i, res.eigenvalues[i], want)
    assert bool(res.converged.all())
    values = res.eigenvalues.reshape(-1)
    assert res.negative_fraction == pytest.approx(float((values < 0).double().mean()))
    assert res.positive_mean == pytest.approx(float(values[values > 0].mean()))


def test_batchnorm_cnn_mini_batches_vmapped_match_the_single_batch_solver():
    model = MODELS["cnn"]()
    x, y = batch("cnn", n=8)
    res = max_eigenvalue_spectrum(model, CE, (x, y), batch_size=4, top_k=2, which="LA", tol=1e-8,
                                  progress=False)
    for i in range(2):
        one = hessian_spectrum(model, CE, (x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]), top_k=2, which="LA",
                               tol=1e-8, progress=False)
        assert torch.allclose(res.eigenvalues[i], one.eigenvalues, rtol=1e-6)
    assert model.training  # restored


def test_transform_is_applied_per_mini_batch_and_seeded():
    x, y = batch("mlp", n=16)
    model = mlp()
    flipped = max_eigenvalue_spectrum(model, CE, (x, y), batch_size=8, top_k=2, tol=1e-8,
                                      transform=lambda t: t.flip(-1), progress=False)
    direct = max_eigenvalue_spectrum(model, CE, (x.flip(-1), y), batch_size=8, top_k=2, tol=1e-8,
                                     progress=False)
    assert torch.allclose(flipped.eigenvalues, direct.eigenvalues, rtol=1e-8)
    noisy = lambda t: t + 0.3 * torch.randn_like(t)  # noqa: E731
    a = max_eigenvalue_spectrum(model, CE, (x, y), batch_size=8, top_k=2, transform=noisy, progress=False)
    b = max_eigenvalue_spectrum(model, CE, (x, y), batch_size=8, top_k=2, transform=noisy, progress=False)
    assert torch.equal(a.eigenvalues, b.eigenvalues)
    assert not torch.allclose(a.eigenvalues, direct.eigenvalues, rtol=1e-3)


def test_out_and_resume_skip_finished_mini_batches(tmp_path):
    x, y = batch("mlp", n=24)
    calls = []

    def counting(t):
        calls.append(1)
        return t

    first = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=2, transform=counting,
                                    out=tmp_path, per_pass=2, progress=False)
    assert len(calls) == 3
    lines = (tmp_path / "points.rank0.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "eigenvalues" in json.loads(lines[0])["result"]
    again = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=2, transform=counting,
                                    out=tmp_path, per_pass=2, progress=False)
    assert len(calls) == 3  # nothing recomputed
    assert torch.allclose(first.eigenvalues, again.eigenvalues)
    with pytest.raises(ValueError, match="another sweep"):
        max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=3, out=tmp_path, progress=False)


def test_plot_two_panels_headless(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    x, y = batch("mlp", n=16)
    res = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=3, which="SA", progress=False)
    assert (res.eigenvalues < 0).any()
    fig, (neg, pos) = res.plot()
    assert neg.get_title().startswith("negative") and pos.get_title().startswith("positive")
    fig.savefig(tmp_path / "max_eig.png")
    assert res.to_dict()["negative_fraction"] == res.negative_fraction


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 100}, "fewer than one mini-batch"),
    ({"which": "XX"}, "which"),
    ({"top_k": 10_000}, "top_k"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        max_eigenvalue_spectrum(mlp(), CE, batch("mlp", n=16), progress=False, **kwargs)


def test_nan_loss_names_the_mini_batch():
    x, y = batch("mlp", n=16)
    x[12, 0] = float("nan")
    with pytest.raises(ValueError, match="batch 1"):
        max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=2, progress=False)


def test_out_of_memory_falls_back_to_smaller_chunks(monkeypatch):
    import fastvit_analysis.curvature.max_eigen as max_eigen

    x, y = batch("mlp", n=24)
    want = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=2, tol=1e-8, warm_start=False,
                                   progress=False)
    real = max_eigen.residual_eigsh
    sizes = []

    def small_memory(apply, v0, *args, **kwargs):
        sizes.append(v0.shape[0])
        if v0.shape[0] > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(apply, v0, *args, **kwargs)

    monkeypatch.setattr(max_eigen, "residual_eigsh", small_memory)
    got = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=2, tol=1e-8, warm_start=False,
                                  progress=False)
    assert sizes[0] == 3 and sizes.count(1) == 3
    assert torch.allclose(got.eigenvalues, want.eigenvalues, rtol=1e-6)


def test_reverse_over_reverse_mode_gives_the_same_spectrum():
    x, y = batch("mlp", n=16)
    a = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=2, tol=1e-8, progress=False)
    b = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=2, tol=1e-8,
                                hvp_mode="reverse-over-reverse", progress=False)
    assert torch.allclose(a.eigenvalues, b.eigenvalues, rtol=1e-6)


def test_num_samples_is_batch_size_times_mini_batches():
    # the CLI's provenance block reads result.num_samples (it was null for max-eigen)
    from fastvit_analysis.curvature.max_eigen import MaxEigenvalueSpectrumResult

    spec = MaxEigenvalueSpectrumResult(eigenvalues=torch.zeros(5, 2), residuals=torch.zeros(5, 2),
                                 converged=torch.ones(5, 2, dtype=torch.bool), negative_fraction=0.0,
                                 positive_mean=float("nan"), batch_size=16, which="LM", num_hvp=0)
    assert spec.num_samples == 80


def test_n_hvp_counts_every_product_and_finished_mini_batches_stop(monkeypatch):
    # each mini-batch stops (is locked) when its own pairs pass; n_hvp is the products really made
    from fastvit_analysis.curvature.operator import MiniBatchHessians

    x, y = batch("mlp", n=32)
    rows_seen = []
    real = MiniBatchHessians._local_matmat

    def counting(self, V, rows=None):
        rows_seen.append(V.shape[0])
        return real(self, V, rows)

    monkeypatch.setattr(MiniBatchHessians, "_local_matmat", counting)
    res = max_eigenvalue_spectrum(mlp(), CE, (x, y), batch_size=8, top_k=2, tol=1e-8, batches_per_pass=4,
                                  progress=False)
    assert res.n_hvp == sum(rows_seen)
    assert min(rows_seen) < 4            # some mini-batches finished before the others
    assert bool(res.converged.all())

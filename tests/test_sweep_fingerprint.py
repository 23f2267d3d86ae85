"""Stale resume (issue 12.1): a folder written from other weights, data or settings is refused, naming
what differs; resume=False recomputes; the same call reuses and says so. One fingerprint function."""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
from torch import nn

from fastvit_analysis import loss_landscape, max_eigenvalue_spectrum, noise_robustness
from fastvit_analysis.common.fingerprint import describe_mismatch, fingerprint, hash_tensors
from fastvit_analysis.sweep import StaleResultsError

CE = nn.CrossEntropyLoss()


def mlp(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def data(seed: int = 0, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(3, (n,), generator=g)


def conv(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3)).eval()


def images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 3, 8, 8, generator=g), torch.randint(3, (6,), generator=g))]


# ------------------------------------------------------------------------------- the one function
def test_hash_tensors_is_sha256_of_name_shape_dtype_and_bytes():
    t = torch.tensor([1.0, -2.0, 3.5])
    expected = hashlib.sha256(b"w:(3,):torch.float32;" + t.numpy().tobytes()).hexdigest()
    assert hash_tensors({"w": t}) == expected
    assert hash_tensors({"w": t[::1].clone()}) == expected  # values, not identity
    strided = torch.tensor([1.0, 9.0, -2.0, 9.0, 3.5, 9.0])[::2]  # a non-contiguous view: same values
    assert hash_tensors({"w": strided}) == expected
    assert hash_tensors({"w": t.double()}) != expected and hash_tensors({"v": t}) != expected


def test_fingerprint_names_weights_buffers_data_and_settings():
    x, y = data()
    base = fingerprint("a/1", model=conv(0), data=(x, y), settings={"k": 1})
    assert base == fingerprint("a/1", model=conv(0), data=(x, y), settings={"k": 1})  # deterministic
    m = conv(0)
    m[1].running_mean += 1  # only a buffer differs (BatchNorm statistics)
    assert describe_mismatch(base, fingerprint("a/1", model=m, data=(x, y), settings={"k": 1})) == [
        "weights (model buffers, e.g. BatchNorm statistics)"]
    assert describe_mismatch(base, fingerprint("a/1", model=conv(1), data=(x, y), settings={"k": 1}))[0] == \
        "weights (model parameters)"
    assert describe_mismatch(base, fingerprint("a/1", model=conv(0), data=data(1), settings={"k": 1})) == [
        "data (the inputs/targets used)"]
    assert describe_mismatch(base, fingerprint("a/2", model=conv(0), data=(x, y), settings={"k": 2})) == [
        "algorithm version (stored 'a/1', now 'a/2')", "setting k (stored 1, now 2)"]


# ------------------------------------------------------------------------------ max-eigen spectrum
def test_max_eigen_other_checkpoint_into_the_same_folder_is_refused(tmp_path, capsys):
    kw = dict(batch_size=8, top_k=2, tol=1e-8, progress=False)
    first = max_eigenvalue_spectrum(mlp(1), CE, data(), out=tmp_path, **kw)
    other = mlp(2)
    truth = max_eigenvalue_spectrum(other, CE, data(), **kw)
    assert not torch.allclose(first.eigenvalues, truth.eigenvalues)  # the old code returned `first` here
    with pytest.raises(StaleResultsError, match=r"differs in: weights \(model parameters\).*resume=False"):
        max_eigenvalue_spectrum(other, CE, data(), out=tmp_path, **kw)
    with pytest.raises(StaleResultsError, match=r"differs in: data \(the inputs/targets used\)"):
        max_eigenvalue_spectrum(mlp(1), CE, data(seed=7), out=tmp_path, **kw)
    with pytest.raises(StaleResultsError, match=r"setting tol \(stored 1e-08, now 0.001\)"):
        max_eigenvalue_spectrum(mlp(1), CE, data(), out=tmp_path, **{**kw, "tol": 1e-3})
    capsys.readouterr()
    again = max_eigenvalue_spectrum(mlp(1), CE, data(), out=tmp_path, **kw)
    assert torch.equal(again.eigenvalues, first.eigenvalues)
    assert "max_eigenvalue_spectrum: 2/2 points reused from" in capsys.readouterr().err
    fresh = max_eigenvalue_spectrum(other, CE, data(), out=tmp_path, resume=False, **kw)
    assert torch.equal(fresh.eigenvalues, truth.eigenvalues)
    assert "reused" not in capsys.readouterr().err


# ------------------------------------------------------------------------------ noise robustness
def test_noise_robustness_other_weights_data_or_setting_is_refused(tmp_path, capsys):
    freqs = [0.5 * math.pi]
    kw = dict(eps=3.0, seed=1, progress=False)
    out = tmp_path / "rob"
    first = noise_robustness(conv(0), images(0), freqs, out=out, **kw)
    with pytest.raises(StaleResultsError, match=r"weights \(model parameters\)"):
        noise_robustness(conv(5), images(0), freqs, out=out, **kw)
    with pytest.raises(StaleResultsError, match=r"data \(the inputs/targets used\)"):
        noise_robustness(conv(0), images(3), freqs, out=out, **kw)
    with pytest.raises(StaleResultsError, match=r"setting eps \(stored 3.0, now 1.0\)"):
        noise_robustness(conv(0), images(0), freqs, out=out, **{**kw, "eps": 1.0})
    capsys.readouterr()
    assert noise_robustness(conv(0), images(0), freqs, out=out, **kw).to_dict() == first.to_dict()
    assert "noise robustness: 2/2 points reused" in capsys.readouterr().err
    fresh = noise_robustness(conv(5), images(3), freqs, out=out, resume=False, **kw)
    assert fresh.to_dict() == noise_robustness(conv(5), images(3), freqs, **kw).to_dict()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fingerprint"]["algorithm"] == "noise_robustness/2"


def test_landscape_other_data_of_the_same_size_is_refused(tmp_path):
    x, y = data()
    model = mlp(1)
    loss_landscape(model, CE, (x, y), steps=2, out=tmp_path, progress=False)
    with pytest.raises(StaleResultsError, match=r"data \(the inputs/targets used\)"):
        loss_landscape(model, CE, (x + 1, y), steps=2, out=tmp_path, progress=False)

"""interpolate and trajectory: endpoints, closed form, PCA against numpy's SVD, plane landscape."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from fastvit_analysis import interpolate, trajectory


def bn_net(seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        m[1].running_mean.normal_()
        m[1].running_var.uniform_(0.5, 2)
    return m


def data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


def eval_loss(m, d):
    m = copy.deepcopy(m).eval()
    with torch.no_grad():
        return nn.functional.cross_entropy(m(d[0]), d[1]).item()


def test_interpolate_endpoints_and_midpoint():
    a, b = bn_net(0), bn_net(1)
    d = data()
    res = interpolate(a, b, nn.CrossEntropyLoss(), d, steps=3, progress=False)
    assert res.loss[0] == pytest.approx(eval_loss(a, d), rel=1e-6)
    assert res.loss[2] == pytest.approx(eval_loss(b, d), rel=1e-5)
    mid = copy.deepcopy(a)
    with torch.no_grad():
        for (_, t), ta, tb in zip(mid.state_dict().items(), a.state_dict().values(), b.state_dict().values()):
            if t.is_floating_point():
                t.copy_(0.5 * ta + 0.5 * tb)
    assert res.loss[1] == pytest.approx(eval_loss(mid, d), rel=1e-5)
    keep = interpolate(a, b, nn.CrossEntropyLoss(), d, steps=3, interpolate_buffers=False, progress=False)
    b_with_a_stats = copy.deepcopy(b)
    for buf, abuf in zip(b_with_a_stats.buffers(), a.buffers()):
        buf.copy_(abuf)
    assert keep.loss[2] == pytest.approx(eval_loss(b_with_a_stats, d), rel=1e-5)


def test_interpolate_quadratic_closed_form():
    a, b = nn.Linear(3, 1, bias=False), nn.Linear(3, 1, bias=False)
    x, y = torch.randn(10, 3), torch.randn(10, 1)
    res = interpolate(a, b, nn.MSELoss(), (x, y), steps=5, span=(-0.5, 1.5), progress=False)
    t = np.linspace(-0.5, 1.5, 5)
    wa, wb = a.weight.detach().double().numpy(), b.weight.detach().double().numpy()
    expected = [np.mean((x.double().numpy() @ ((1 - s) * wa + s * wb).T - y.double().numpy()) ** 2) for s in t]
    np.testing.assert_allclose(res.loss, expected, rtol=1e-5)


def test_interpolate_mismatched_models():
    with pytest.raises(ValueError, match="model_b"):
        interpolate(nn.Linear(3, 2), nn.Linear(4, 2), nn.MSELoss(), (torch.randn(2, 3), torch.randn(2, 2)))
    with pytest.raises(ValueError, match="steps"):
        interpolate(nn.Linear(3, 2), nn.Linear(3, 2), nn.MSELoss(), (torch.randn(2, 3), torch.randn(2, 2)), steps=1)


def test_trajectory_pca_matches_numpy_and_recovers_plane():
    torch.manual_seed(0)
    model = bn_net(0)
    final = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    sizes = [final[n].numel() for n in names]
    p = sum(sizes)
    basis, _ = torch.linalg.qr(torch.randn(p, 2, dtype=torch.float64))
    ab = torch.tensor([[3.0, 1.0], [2.0, -1.5], [1.0, 0.5], [0.4, -0.2], [0.0, 0.0]], dtype=torch.float64)
    ckpts = []
    for row in ab:
        flat = basis @ row
        ck = {k: v.clone() for k, v in final.items()}
        off = 0
        for n, s in zip(names, sizes):
            ck[n] = final[n] + flat[off:off + s].reshape(final[n].shape).float()
            off += s
        ckpts.append(ck)
    res = trajectory(ckpts, nn.CrossEntropyLoss(), data(), model=model, steps=3, progress=False)
    # reference PCA (Li et al.: centred, rows = θ_t − θ_final for t < final)
    m = np.stack([np.concatenate([(c[n] - final[n]).double().numpy().ravel() for n in names]) for c in ckpts[:-1]])
    mc = m - m.mean(0)
    _, s, vt = np.linalg.svd(mc, full_matrices=False)
    np.testing.assert_allclose(res.explained_variance_ratio, (s ** 2 / (s ** 2).sum())[:2], rtol=1e-6)
    flat_dirs = np.stack([np.concatenate([d[n].double().numpy().ravel() for n in names]) for d in res.directions])
    np.testing.assert_allclose(np.abs(flat_dirs @ vt[:2].T), np.eye(2), atol=1e-6)
    full = np.concatenate([m, np.zeros((1, p))])
    np.testing.assert_allclose(res.coordinates, full @ flat_dirs.T, atol=1e-5)
    # the checkpoints lie in the plane, so the projection reconstructs them
    np.testing.assert_allclose(res.coordinates @ flat_dirs, full, atol=1e-5)
    # the landscape is centred on θ_final and spans every checkpoint
    lo, hi = [c[0] for c in res.landscape.coordinates], [c[-1] for c in res.landscape.coordinates]
    assert np.all(res.coordinates.min(0) > lo) and np.all(res.coordinates.max(0) < hi)
    assert res.landscape.loss.shape == (3, 3)
    assert set(res.to_dict()) >= {"coordinates", "explained_variance_ratio", "landscape"}


def test_trajectory_from_saved_files_and_column_slices(tmp_path, monkeypatch):
    import fastvit_analysis.landscape.trajectory as traj_module

    torch.manual_seed(2)
    model = bn_net(0)
    ckpts = [{k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
             for _ in range(4)]
    paths = []
    for k, ck in enumerate(ckpts):
        paths.append(tmp_path / f"ck{k}.pt")
        torch.save({"state_dict": ck} if k % 2 else ck, paths[-1])
    whole = trajectory(ckpts, model=model)
    monkeypatch.setattr(traj_module, "_COLUMNS", 7)  # many slices: same answer
    sliced = trajectory(paths, model=model)
    np.testing.assert_allclose(sliced.coordinates, whole.coordinates, atol=1e-10)
    np.testing.assert_allclose(sliced.explained_variance_ratio, whole.explained_variance_ratio, rtol=1e-10)


def test_trajectory_bad_inputs():
    m = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="at least 3"):
        trajectory([m, m], model=m)
    with pytest.raises(ValueError, match="fewer than 2 directions"):
        trajectory([m, m, m], model=m)
    with pytest.raises(TypeError, match=r"checkpoints\[1\]"):
        trajectory([m, 3, m], model=m)
    with pytest.raises(ValueError, match="no parameter 'bias'"):
        trajectory([m, {"weight": m.weight}, m], model=m)

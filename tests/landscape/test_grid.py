"""loss_landscape: exact values (centre, closed-form quadratic, reference loop), restoration, resume, errors."""
import copy
import json

import numpy as np
import pytest
import timm
import torch
from torch import nn

from fastvit_analysis import filter_normalized_directions, loss_landscape


def small_cnn():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 4))
    with torch.no_grad():  # non-trivial running statistics: eval mode must use them
        m[1].running_mean.normal_()
        m[1].running_var.uniform_(0.5, 2.0)
    return m


def tiny_vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=8, patch_size=4, embed_dim=16, depth=1,
                             num_heads=2, num_classes=4)


def cnn_data(n=12, size=6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return [(x[:7], y[:7]), (x[7:], y[7:])]  # two batches of unequal size


def reference_grid(model, loss_fn, data, directions, coords_x, coords_y):
    """The reference notebook's loop: copy the model, set θ, evaluate every point."""
    loss = np.zeros((len(coords_x), len(coords_y)))
    acc = np.zeros_like(loss)
    for i, a in enumerate(coords_x):
        for j, b in enumerate(coords_y):
            m = copy.deepcopy(model).eval()
            with torch.no_grad():
                for name, p in m.named_parameters():
                    if name in directions[0]:
                        p.add_(a * directions[0][name] + b * directions[1][name])
                total, correct, n = 0.0, 0, 0
                for x, y in data:
                    out = m(x)
                    total += loss_fn(out, y).item() * len(x)
                    correct += (out.argmax(-1) == y).sum().item()
                    n += len(x)
            loss[i, j], acc[i, j] = total / n, correct / n
    return loss, acc


@pytest.mark.parametrize("make_model,size,steps", [(small_cnn, 6, 3), (tiny_vit, 8, 2)])
def test_batched_equals_reference_loop_and_model_unchanged(make_model, size, steps):
    model = make_model().train()
    data = cnn_data(size=size)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    dirs = filter_normalized_directions(model, 2, seed=4)
    res = loss_landscape(model, nn.CrossEntropyLoss(), data, directions=dirs, steps=steps, span=(-0.5, 1.0),
                         per_pass=4, progress=False)
    ref_loss, ref_acc = reference_grid(model, nn.CrossEntropyLoss(), data, dirs, *res.coordinates)
    np.testing.assert_allclose(res.loss, ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.accuracy, 100 * ref_acc, rtol=1e-12)  # percent
    one_by_one = loss_landscape(model, nn.CrossEntropyLoss(), data, directions=dirs, steps=steps,
                                span=(-0.5, 1.0), per_pass=1, progress=False)
    np.testing.assert_allclose(res.loss, one_by_one.loss, rtol=1e-5, atol=1e-5)
    assert model.training and all(m.training for m in model.modules())
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]), n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n


def test_centre_point_is_the_models_own_loss():
    model = small_cnn()
    data = cnn_data()
    res = loss_landscape(model, nn.CrossEntropyLoss(), data, steps=5, progress=False)
    assert res.loss.shape == (5, 5) and res.coordinates[0][2] == 0.0
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        x = torch.cat([b[0] for b in data])
        y = torch.cat([b[1] for b in data])
        expected = nn.CrossEntropyLoss()(m(x), y).item()
        expected_acc = (m(x).argmax(-1) == y).float().mean().item()
    assert res.loss[2, 2] == pytest.approx(expected, rel=1e-6)
    assert res.accuracy[2, 2] == pytest.approx(100 * expected_acc)  # percent
    assert model.training  # mode restored


def test_quadratic_model_1d_closed_form_and_l2_term():
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False)
    x = torch.randn(20, 5)
    y = torch.randn(20, 1)
    (d,) = filter_normalized_directions(model, 1, seed=0)
    res = loss_landscape(model, nn.MSELoss(), (x, y), directions=[d], dims=1, steps=7, span=(-2.0, 3.0),
                         l2_coef=0.05, progress=False)
    a = np.linspace(-2, 3, 7)
    w, dv = model.weight.detach().double(), d["weight"].double()
    r = (x.double() @ w.T - y.double()).squeeze(1).numpy()
    s = (x.double() @ dv.T).squeeze(1).numpy()
    nll = np.mean(r ** 2) + 2 * a * np.mean(r * s) + a ** 2 * np.mean(s ** 2)
    np.testing.assert_allclose(res.nll, nll, rtol=1e-5)
    l2 = np.array([np.linalg.norm((w + t * dv).numpy()) for t in a])
    np.testing.assert_allclose(res.l2_norm, l2, rtol=1e-6)
    np.testing.assert_allclose(res.loss, nll + 0.05 * l2, rtol=1e-5)
    assert np.isnan(res.accuracy).all()  # regression: no accuracy
    assert res.to_dict()["type"] == "LandscapeResult"


def test_resume_after_kill_recomputes_only_missing(tmp_path):
    model = small_cnn()
    data = cnn_data()

    class FlakyLoss(nn.Module):
        calls = 0
        fail_after = None

        def forward(self, out, y):
            FlakyLoss.calls += 1
            if self.fail_after is not None and FlakyLoss.calls > self.fail_after:
                raise RuntimeError("killed")
            return nn.functional.cross_entropy(out, y)

    full = loss_landscape(model, FlakyLoss(), data, steps=3, per_pass=2, progress=False)
    loss_fn = FlakyLoss()
    loss_fn.fail_after = 2 * 2  # 2 batches per pass: 2 passes = 4 points finish, then the kill
    FlakyLoss.calls = 0
    with pytest.raises(RuntimeError, match="killed"):
        loss_landscape(model, loss_fn, data, steps=3, per_pass=2, out=tmp_path, progress=False)
    lines = (tmp_path / "points.rank0.jsonl").read_text().splitlines()
    assert len(lines) == 4
    loss_fn.fail_after = None
    FlakyLoss.calls = 0
    resumed = loss_landscape(model, loss_fn, data, steps=3, per_pass=2, out=tmp_path, progress=False)
    assert FlakyLoss.calls == 2 * 3  # 5 missing points = 3 passes over 2 batches
    np.testing.assert_array_equal(resumed.loss, full.loss)
    FlakyLoss.calls = 0
    again = loss_landscape(model, loss_fn, data, steps=3, per_pass=2, out=tmp_path, progress=False)
    assert FlakyLoss.calls == 0
    np.testing.assert_array_equal(again.loss, full.loss)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["kind"] == "loss_landscape" and meta["n_samples"] == 12


def test_out_dir_of_another_model_or_grid_is_refused(tmp_path):
    model = small_cnn()
    data = cnn_data()
    loss_landscape(model, nn.CrossEntropyLoss(), data, steps=2, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="another sweep"):
        loss_landscape(model, nn.CrossEntropyLoss(), data, steps=3, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"another sweep.*weights \(model parameters\).*resume=False"):
        other = small_cnn()
        with torch.no_grad():
            other[0].weight.mul_(2)
        loss_landscape(other, nn.CrossEntropyLoss(), data, steps=2, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="another sweep.*setting directions"):
        loss_landscape(model, nn.CrossEntropyLoss(), data, steps=2, seed=1, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"another sweep.*data \(the inputs/targets used\)"):
        loss_landscape(model, nn.CrossEntropyLoss(), data[:1], steps=2, out=tmp_path, progress=False)
    # resume=False starts over
    res = loss_landscape(model, nn.CrossEntropyLoss(), data, steps=3, out=tmp_path, resume=False, progress=False)
    assert res.loss.shape == (3, 3)


def test_bad_inputs():
    model = small_cnn()
    data = cnn_data()
    ce = nn.CrossEntropyLoss()
    dirs = filter_normalized_directions(model, 2)
    with pytest.raises(ValueError, match="steps"):
        loss_landscape(model, ce, data, steps=1)
    with pytest.raises(ValueError, match="dims"):
        loss_landscape(model, ce, data, dims=3)
    with pytest.raises(ValueError, match="span"):
        loss_landscape(model, ce, data, span=(1.0, -1.0))
    with pytest.raises(ValueError, match="expected 2 direction"):
        loss_landscape(model, ce, data, directions=dirs[:1])
    bad = [dict(dirs[0]), dirs[1]]
    bad[0]["nope.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="not parameters of the model.*nope.weight"):
        loss_landscape(model, ce, data, directions=bad)
    bad = [dict(dirs[0]), dirs[1]]
    del bad[0]["0.weight"]
    with pytest.raises(ValueError, match="misses trainable parameters.*0.weight"):
        loss_landscape(model, ce, data, directions=bad)
    bad = [dict(dirs[0]), dirs[1]]
    bad[0]["0.weight"] = torch.zeros(6, 3, 2, 2)
    with pytest.raises(ValueError, match=r"0.weight.*shape \(6, 3, 2, 2\)"):
        loss_landscape(model, ce, data, directions=bad)
    with pytest.raises(ValueError, match="per_pass"):
        loss_landscape(model, ce, data, per_pass=0)
    with pytest.raises(ValueError, match="data"):
        loss_landscape(model, ce, [], steps=2)
    with pytest.raises(TypeError, match="model"):
        loss_landscape(lambda x: x, ce, data)
    with pytest.raises(TypeError, match="loss_fn"):
        loss_landscape(model, None, data, steps=2)
    with pytest.raises(ValueError, match="l2_coef"):
        loss_landscape(model, ce, data, steps=2, l2_coef=float("nan"))
    with pytest.raises(TypeError, match="directions"):
        loss_landscape(model, ce, data, directions=[1, 2])
    for ppp in (1, 2):
        with pytest.raises(ValueError, match=r"loss_fn must return a scalar.*\(7,\)"):
            loss_landscape(model, nn.CrossEntropyLoss(reduction="none"), data, steps=2, per_pass=ppp)


def test_tuple_outputs_give_the_accuracy_of_their_logits():
    # the loss and the accuracy both see the logits (the first element; common/outputs.py), where the
    # accuracy used to be silently NaN
    class TupleOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x), x

    data = (torch.randn(6, 3), torch.randint(0, 2, (6,)))
    model = TupleOut()
    dirs = filter_normalized_directions(model, 2, seed=0)
    res = loss_landscape(model, nn.CrossEntropyLoss(), data, directions=dirs, steps=2, progress=False)
    plain = loss_landscape(model.fc, nn.CrossEntropyLoss(), data, steps=2, progress=False,
                           directions=[{n[len("fc."):]: t for n, t in d.items()} for d in dirs])
    assert np.isfinite(res.accuracy).all()
    np.testing.assert_allclose(res.accuracy, plain.accuracy)
    np.testing.assert_allclose(res.loss, plain.loss, rtol=1e-6)


def test_default_points_per_pass_is_one_on_cpu_and_gives_the_same_grid():
    from fastvit_analysis.landscape.grid import default_points_per_pass

    assert default_points_per_pass(torch.device("cpu")) == 1
    assert default_points_per_pass(torch.device("cuda", 0)) == 4
    model = small_cnn()
    data = cnn_data(size=6)
    dirs = filter_normalized_directions(model, 2, seed=1)
    default = loss_landscape(model, nn.CrossEntropyLoss(), data, directions=dirs, steps=3, progress=False)
    stacked = loss_landscape(model, nn.CrossEntropyLoss(), data, directions=dirs, steps=3, per_pass=3,
                             progress=False)
    np.testing.assert_allclose(default.loss, stacked.loss, rtol=1e-5, atol=1e-6)

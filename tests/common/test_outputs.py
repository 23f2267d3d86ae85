"""Models whose forward returns a dict, a tuple or a ModelOutput-like object: every analysis that needs
logits finds them by one rule (common/outputs.py) and gives the numbers of the plain-tensor model;
`output_fn=` overrides the rule; anything else is a clear TypeError."""
import pytest
import torch
from torch import nn

from fastvit_analysis import (
    hessian_density,
    hessian_spectrum,
    hessian_trace,
    interpolate,
    loss_landscape,
    max_eigenvalue_spectrum,
    noise_robustness,
    trajectory,
)
from fastvit_analysis.common.outputs import LogitsLoss, model_logits
from fastvit_analysis.curvature.operator import HessianOperator
from fastvit_analysis.training import evaluate


class ModelOutputLike:
    """What transformers' ModelOutput offers: attribute access to `.logits` (and other fields)."""

    def __init__(self, logits, hidden):
        self.logits, self.hidden_states = logits, hidden


class Net(nn.Module):
    """(B, 3, 8, 8) images -> 3 classes; `kind` says how the logits are returned."""

    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(0)
        self.kind = kind
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        h = self.body(x)
        z = self.head(h)
        if self.kind == "tensor":
            return z
        if self.kind == "dict":
            return {"logits": z, "features": h}
        if self.kind == "tuple":
            return z, h
        if self.kind == "modeloutput":
            return ModelOutputLike(z, (h,))
        if self.kind == "custom":  # no rule applies: needs output_fn
            return {"scores": z, "features": h}
        raise AssertionError(self.kind)


KINDS = ["dict", "tuple", "modeloutput"]


def data(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def run_all(model, output_fn=None):
    """Every analysis that reads logits, tiny; returns comparable numbers."""
    x, y = data()
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    ce = nn.CrossEntropyLoss()
    kw = {} if output_fn is None else {"output_fn": output_fn}
    out = {}
    out["noise"] = noise_robustness(model, batches, freqs=[0.5, 2.0], eps=0.5, progress=False, **kw).noisy_accuracy
    land = loss_landscape(model, ce, batches, steps=3, dims=1, progress=False, **kw)
    out["landscape"] = (land.nll.tolist(), land.accuracy.tolist())
    other = Net(model.kind)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    out["interpolate"] = interpolate(model, other, ce, batches, steps=3, progress=False, **kw).accuracy.tolist()
    g = torch.Generator().manual_seed(2)
    ckpts = [{k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}
             for _ in range(4)]
    out["trajectory"] = trajectory(ckpts, ce, batches, model=model, steps=2, progress=False,
                                   **kw).landscape.accuracy.tolist()
    out["spectrum"] = hessian_spectrum(model, ce, batches, top_k=2, progress=False, **kw).eigenvalues.tolist()
    out["trace"] = hessian_trace(model, ce, batches, num_probes=4, progress=False, **kw).value
    out["density"] = hessian_density(model, ce, batches, num_probes=1, steps=5, progress=False, **kw).nodes.tolist()
    out["max_eigen"] = max_eigenvalue_spectrum(model, ce, (x, y), batch_size=4, top_k=1, progress=False,
                                               **kw).eigenvalues.tolist()
    out["operator"] = HessianOperator(model, ce, batches, **kw).matvec(torch.ones(83)).tolist()
    out["evaluate"] = evaluate(model, batches, **kw)
    return out


def flat(v):
    """Nested lists/tuples/dicts of numbers -> one flat list of floats."""
    if isinstance(v, dict):
        return [f for k in sorted(v) for f in flat(v[k])]
    if isinstance(v, (list, tuple)):
        return [f for item in v for f in flat(item)]
    return [float(v)]


@pytest.fixture(scope="module")
def reference():
    return run_all(Net("tensor"))


@pytest.mark.parametrize("kind", KINDS)
def test_every_analysis_reads_logits_of_dict_tuple_modeloutput(kind, reference):
    got = run_all(Net(kind))
    assert set(got) == set(reference)
    for name in reference:
        assert flat(got[name]) == pytest.approx(flat(reference[name]), rel=1e-6, abs=1e-9), name
    # accuracy was silently NaN in the landscape of such models
    assert all(a == a for a in got["landscape"][1])


def test_output_fn_overrides_the_rule(reference):
    got = run_all(Net("custom"), output_fn=lambda out: out["scores"])
    for name in reference:
        assert flat(got[name]) == pytest.approx(flat(reference[name]), rel=1e-6, abs=1e-9), name


@pytest.mark.parametrize("call", [
    lambda m, b: noise_robustness(m, b, freqs=[1.0], progress=False),
    lambda m, b: loss_landscape(m, nn.CrossEntropyLoss(), b, steps=2, dims=1, progress=False),
    lambda m, b: hessian_spectrum(m, nn.CrossEntropyLoss(), b, top_k=1, progress=False),
    lambda m, b: max_eigenvalue_spectrum(m, nn.CrossEntropyLoss(), b, batch_size=4, top_k=1, progress=False),
    lambda m, b: evaluate(m, b),
], ids=["noise", "landscape", "spectrum", "max_eigen", "evaluate"])
def test_unknown_output_is_a_clear_error(call):
    with pytest.raises(TypeError, match=r"model output: .*keys \['features', 'scores'\].*output_fn="):
        call(Net("custom"), data())


def test_output_fn_must_be_callable_and_return_a_tensor():
    with pytest.raises(TypeError, match="output_fn: expected a callable"):
        noise_robustness(Net("dict"), data(), freqs=[1.0], output_fn="logits", progress=False)
    with pytest.raises(TypeError, match="output_fn: must return the logits tensor"):
        evaluate(Net("dict"), data(), output_fn=lambda out: out)


def test_model_logits_rule_order_and_loss_wrapper():
    z, h = torch.zeros(2, 3), torch.ones(2, 5)
    assert model_logits(z) is z
    assert model_logits(ModelOutputLike(z, h)) is z
    assert model_logits({"features": h, "logits": z}) is z  # the key, not the first entry
    assert model_logits([z, h]) is z
    with pytest.raises(TypeError, match=r"tuple of 2 \(NoneType, Tensor\)"):
        model_logits((None, z))
    loss = LogitsLoss(nn.CrossEntropyLoss(reduction="sum"))
    assert loss.reduction == "sum"  # read through: the curvature and landscape code weight batches by it
    y = torch.tensor([0, 2])
    assert float(loss({"logits": z}, y)) == pytest.approx(float(nn.CrossEntropyLoss(reduction="sum")(z, y)))

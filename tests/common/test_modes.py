"""Train/eval flags: every analysis runs the model in eval mode and afterwards gives each submodule back
its own flag, so a user's frozen BatchNorm (bn.eval() inside model.train()) stays frozen and the rest stays
in training mode."""
import pytest
import timm
import torch
from torch import nn

from fastvit_analysis import (
    fourier_analysis,
    hessian_spectrum,
    loss_landscape,
    minibatch_cka,
    noise_robustness,
    variance_analysis,
)
from fastvit_analysis.training import evaluate


def frozen_bn_resnet():
    torch.manual_seed(0)
    net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=3,
                                    channels=(4, 4, 8, 8))
    net.train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns[::2]:  # every other BatchNorm frozen, as when fine-tuning with frozen statistics
        bn.eval()
    return net


def batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(2)]


ANALYSES = {
    "fourier_analysis": lambda m, d: fourier_analysis(m, d, progress=False),
    "variance_analysis": lambda m, d: variance_analysis(m, d, progress=False),
    "minibatch_cka": lambda m, d: minibatch_cka(m, d, progress=False),
    "noise_robustness": lambda m, d: noise_robustness(m, d, freqs=[1.0], progress=False),
    "loss_landscape": lambda m, d: loss_landscape(m, nn.CrossEntropyLoss(), d, steps=2, dims=1, progress=False),
    "hessian_spectrum": lambda m, d: hessian_spectrum(m, nn.CrossEntropyLoss(), d, top_k=1, max_hvp=20,
                                                      params="fc", progress=False),
    "evaluate": lambda m, d: evaluate(m, d),
}


@pytest.mark.parametrize("name", list(ANALYSES))
def test_analysis_keeps_every_submodule_flag(name):
    net = frozen_bn_resnet()
    before = {n: m.training for n, m in net.named_modules()}
    assert sum(not f for f in before.values()) >= 4 and sum(before.values()) >= 4  # a real mix
    state = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []
    hook = net.register_forward_pre_hook(lambda mod, inp: seen.append(
        [n for n, m in net.named_modules() if m.training]))
    ANALYSES[name](net, batches())
    hook.remove()
    assert {n: m.training for n, m in net.named_modules()} == before
    # the analysis itself ran in eval mode (no module training during any forward) ...
    assert seen and all(training == [] for training in seen)
    # ... so no BatchNorm statistics moved
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k

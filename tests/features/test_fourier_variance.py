"""fourier_analysis / variance_analysis over a loader equal the paper's eager pipeline on hooked latents."""
import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

from fastvit_analysis import fourier_analysis, variance_analysis  # noqa: E402


def paper_fourier(latent):
    """The paper's notebook: (tokens -> maps), fft2, log(|.|+1e-6), roll by n/2, mean, diag[n/2:], minus DC."""
    if latent.ndim == 3:
        b, n, c = latent.shape
        h = int(math.sqrt(n))
        latent = latent.transpose(1, 2).reshape(b, c, h, h)
    h = latent.shape[-1]
    f = torch.log(torch.fft.fft2(latent).abs() + 1e-6)
    f = torch.roll(f, shifts=(int(h / 2), int(h / 2)), dims=(2, 3)).mean(dim=(0, 1))
    f = f.diag()[int(h / 2):]
    return f - f[0]


def paper_variance(latent):
    if latent.ndim == 3:
        return latent.var(dim=1).mean()
    return latent.var(dim=(-2, -1)).mean()


def hooked_latents(model, modules, x, prefix):
    """Reference capture with plain forward hooks on whole-block outputs (ResNet-style)."""
    out = {}
    handles = [dict(model.named_modules())[m].register_forward_hook(
        lambda mod, a, o, m=m: out.__setitem__(m, o.detach().clone())) for m in modules]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return [out[m][:, prefix:] if out[m].ndim == 3 else out[m] for m in modules]


def vit_latents(vit, x):
    z = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
    lat = [z]
    for blk in vit.blocks:
        z = z + blk.attn(blk.norm1(z))
        lat.append(z)
        z = z + blk.mlp(blk.norm2(z))
        lat.append(z)
    return [t[:, vit.num_prefix_tokens:] for t in lat]


def loader(sizes, shape=(3, 32, 32)):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, *shape, generator=g), torch.zeros(n, dtype=torch.long)) for n in sizes]


@pytest.mark.parametrize("class_token,backend", [(True, None), (False, None), (True, "eager")])
def test_vit_matches_paper_pipeline_over_uneven_batches(class_token, backend):
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=4, embed_dim=24, depth=2, num_heads=2, num_classes=10,
                            class_token=class_token, global_pool="token" if class_token else "avg").eval()
    data = loader([5, 3])
    fourier = fourier_analysis(vit, data, backend=backend, progress=False)
    variance = variance_analysis(vit, data, backend=backend, progress=False)
    x = torch.cat([b[0] for b in data])
    with torch.no_grad():
        ref = vit_latents(vit, x)
    assert fourier.names == ["patch_embed", "blocks.0:msa", "blocks.0:mlp", "blocks.1:msa", "blocks.1:mlp"]
    assert fourier.depths == [0.0, 0.25, 0.5, 0.75, 1.0] and fourier.num_samples == 8
    for i, latent in enumerate(ref):
        torch.testing.assert_close(torch.tensor(fourier.delta_log_amplitude[i], dtype=torch.float64),
                                   paper_fourier(latent).double(), rtol=0, atol=1e-5)
        assert fourier.frequencies[i] == pytest.approx([k / 4 * math.pi for k in range(4)])
        assert variance.variance[i] == pytest.approx(float(paper_variance(latent)), rel=1e-5)
    assert variance.kinds == ["embed", "msa", "mlp", "msa", "mlp"]


def test_resnet_matches_paper_pipeline_with_hooks():
    net = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10,
                                    channels=(16, 32, 32, 32)).eval()
    data = loader([4, 2], shape=(3, 40, 40))
    fourier = fourier_analysis(net, data, progress=False)
    variance = variance_analysis(net, data, progress=False)
    x = torch.cat([b[0] for b in data])
    ref = hooked_latents(net, fourier.names, x, 0)
    for i, latent in enumerate(ref):  # map sizes 10, 10, 5, 3, 2: even and odd n
        torch.testing.assert_close(torch.tensor(fourier.delta_log_amplitude[i], dtype=torch.float64),
                                   paper_fourier(latent).double(), rtol=0, atol=1e-5)
        assert variance.variance[i] == pytest.approx(float(paper_variance(latent)), rel=1e-5)
    assert fourier.kinds == ["embed", "conv", "downsample", "downsample", "downsample"]


def test_radial_spectrum_on_non_square_maps():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    data = loader([3], shape=(3, 8, 12))
    with pytest.raises(ValueError, match="spectrum='radial'"):
        fourier_analysis(conv, data, layers=["0"], progress=False)
    res = fourier_analysis(conv, data, layers=["0", "1"], spectrum="radial", progress=False)
    with torch.no_grad():
        z = conv[0](data[0][0])
    a = torch.log(torch.fft.fft2(z).abs() + 1e-6).mean(dim=(0, 1)).double()
    fy = torch.fft.fftfreq(8, dtype=torch.float64)[:, None] * 2
    fx = torch.fft.fftfreq(12, dtype=torch.float64)[None, :] * 2
    r = torch.round(torch.sqrt(fy ** 2 + fx ** 2) * 4)
    expected = torch.stack([a[r == k].mean() for k in range(4)])
    torch.testing.assert_close(torch.tensor(res.log_amplitude[0], dtype=torch.float64), expected,
                               rtol=0, atol=1e-5)
    assert res.frequencies[0] == pytest.approx([0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
    assert res.spectrum == "radial" and res.delta_log_amplitude[0][0] == 0.0
    # non-square maps: variance over all H*W positions
    var = variance_analysis(conv, data, layers=["0"], progress=False)
    assert var.variance[0] == pytest.approx(float(z.flatten(2).var(-1).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="spectrum must be"):
        fourier_analysis(conv, data, spectrum="polar", progress=False)


def test_results_serialise_and_plot(tmp_path):
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=10)
    data = loader([4], shape=(3, 16, 16))
    fourier = fourier_analysis(vit, data, progress=False)
    variance = variance_analysis(vit, data, progress=False)
    d = fourier.to_dict()
    assert d["type"] == "FourierResult" and d["kinds"][1] == "msa" and len(d["delta_log_amplitude"]) == 5
    assert variance.to_dict()["variance"] == variance.variance
    fourier.save_json(tmp_path / "f.json")
    assert fourier.high_frequency == [d[-1] for d in fourier.delta_log_amplitude]
    for fig in (fourier.plot(), fourier.plot_high_frequency(), variance.plot()):
        fig.savefig(tmp_path / "x.png")
        assert len(fig.axes) >= 1
    shaded = [p for p in variance.plot().axes[0].patches]
    assert len(shaded) == 2  # the two MSA halves


def test_empty_data_is_an_error():
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=10)
    with pytest.raises(ValueError, match="empty"):
        fourier_analysis(vit, [], progress=False)


def test_feature_statistics_one_pass_equals_separate_analyses_and_progress_bar(capsys, monkeypatch):
    from fastvit_analysis.features.statistics import feature_statistics

    monkeypatch.setenv("FASTVIT_PROGRESS", "1")
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=10)
    data = loader([4, 4], shape=(3, 16, 16))
    fourier, variance = feature_statistics(vit, data, progress=True)
    assert "feature statistics" in capsys.readouterr().err  # tqdm bar on stderr
    assert fourier.to_dict() == fourier_analysis(vit, data, progress=False).to_dict()
    assert variance.to_dict() == variance_analysis(vit, data, progress=False).to_dict()
    fourier_analysis(vit, data, progress=False)
    assert capsys.readouterr().err == ""


def test_dataloader_input_equals_list_of_batches():
    from torch.utils.data import DataLoader, TensorDataset

    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=10)
    data = loader([4, 4, 2], shape=(3, 16, 16))
    dl = DataLoader(TensorDataset(torch.cat([b[0] for b in data]), torch.cat([b[1] for b in data])), batch_size=4)
    assert fourier_analysis(vit, dl, progress=False).to_dict() == fourier_analysis(vit, data, progress=False).to_dict()
    assert variance_analysis(vit, dl, progress=False).num_samples == 10

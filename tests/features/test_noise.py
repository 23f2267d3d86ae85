"""frequency_noise per docs/methods.md §3d (spectrum support, conjugate mirror, edge cases, seeding) and
noise_robustness."""
import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from fastvit_analysis import frequency_noise, noise_robustness  # noqa: E402
from fastvit_analysis.features.noise import annulus_mask  # noqa: E402


def spec_mask(size, f, w=0.2):
    """docs/methods.md §3d written out with explicit loops over the centred spectrum."""
    def side(v):
        return max(0, min(size, 2 * math.floor(v * size / (2 * math.pi))))

    outer, inner = side(f + w), side(f - w)
    c = size // 2
    m = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size):
        for j in range(size):
            in_outer = c - outer // 2 <= i < c - outer // 2 + outer and c - outer // 2 <= j < c - outer // 2 + outer
            in_inner = c - inner // 2 <= i < c - inner // 2 + inner and c - inner // 2 <= j < c - inner // 2 + inner
            m[i, j] = in_outer and not in_inner
    return m


def mirror(a):
    """a[-u] in centred coordinates (index i <-> frequency i - size//2)."""
    size = a.shape[-1]
    idx = torch.tensor([(2 * (size // 2) - i) % size for i in range(size)])
    return a[..., idx, :][..., :, idx]


@pytest.mark.parametrize("size", [16, 15])
@pytest.mark.parametrize("f", [0.0, 0.3 * math.pi, 0.5 * math.pi, 0.9 * math.pi, math.pi])
def test_annulus_mask_matches_spec(size, f):
    assert torch.equal(annulus_mask(size, f, 0.2), spec_mask(size, f))


@pytest.mark.parametrize("size", [32, 15])
@pytest.mark.parametrize("f", [0.1 * math.pi, 0.5 * math.pi, 0.9 * math.pi])
def test_spectrum_is_the_masked_noise_plus_its_conjugate_mirror(size, f):
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    out = frequency_noise(x, f, eps=0.25, generator=torch.Generator().manual_seed(7))
    assert out.dtype == x.dtype and out.shape == x.shape and not torch.is_complex(out)
    delta = out - x
    sign_noise = 0.25 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).sign()
    d = torch.fft.fftshift(torch.fft.fft2(sign_noise), dim=(-2, -1))
    m = spec_mask(size, f)
    got = torch.fft.fftshift(torch.fft.fft2(delta), dim=(-2, -1))
    support = m | mirror(m)
    assert got[..., ~support].abs().max() < 1e-5
    expected = 0.5 * (d * m + mirror(d * m).conj())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)
    if size % 2 == 0:  # the even square is not symmetric about DC: the mirror adds frequencies
        assert (support & ~m).any()


def test_edge_frequencies():
    x = torch.zeros(1, 1, 32, 32)
    low = frequency_noise(x, 0.0, eps=1.0, generator=torch.Generator().manual_seed(0))
    m0 = annulus_mask(32, 0.0)
    assert m0.sum() == 4 and m0[16, 16]  # f -> 0 keeps the 2x2 square around DC, DC included
    spectrum = torch.fft.fft2(low.double())
    assert spectrum[0, 0, 0, 0].abs() > 0 and spectrum[0, 0, 8, 8].abs() < 1e-5
    top = annulus_mask(32, math.pi)
    assert top.sum() == 32 * 32 - 28 * 28 and top[0, 0]  # f -> π reaches the corner frequencies
    # bands beyond the spectrum or narrower than one bin leave the input unchanged
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(frequency_noise(x, 5 * math.pi), x)
    torch.testing.assert_close(frequency_noise(x, 0.1 * math.pi), x)
    torch.testing.assert_close(frequency_noise(x, 0.5 * math.pi, eps=0.0), x)


def test_seeded_noise_is_reproducible_and_any_channel_count_works():
    x = torch.randn(5, 8, 8)  # (C, H, W) with five channels
    a = frequency_noise(x, 0.5 * math.pi, generator=torch.Generator().manual_seed(3))
    b = frequency_noise(x, 0.5 * math.pi, generator=torch.Generator().manual_seed(3))
    c = frequency_noise(x, 0.5 * math.pi, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape
    torch.manual_seed(0)
    d = frequency_noise(x, 0.5 * math.pi)
    torch.manual_seed(0)
    assert torch.equal(d, frequency_noise(x, 0.5 * math.pi))


def test_frequency_noise_errors():
    with pytest.raises(ValueError, match="square"):
        frequency_noise(torch.zeros(1, 3, 8, 6), 1.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        frequency_noise(torch.zeros(8, 8), 1.0)
    with pytest.raises(ValueError, match="freq"):
        frequency_noise(torch.zeros(1, 3, 8, 8), -0.1)
    with pytest.raises(ValueError, match="eps"):
        frequency_noise(torch.zeros(1, 3, 8, 8), 1.0, eps=-1)
    with pytest.raises(ValueError, match="bandwidth"):
        frequency_noise(torch.zeros(1, 3, 8, 8), 1.0, bandwidth=0)
    with pytest.raises(ValueError, match="freq"):
        frequency_noise(torch.zeros(1, 3, 8, 8), float("nan"))
    with pytest.raises(ValueError, match="floating"):
        frequency_noise(torch.zeros(1, 3, 8, 8, dtype=torch.long), 1.0)


class Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def test_noise_robustness_against_direct_loop_and_resume(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (6, 4)]
    model = Counting()
    freqs = [0.25 * math.pi, 0.75 * math.pi]
    res = noise_robustness(model, data, freqs, eps=2.0, seed=5, out=tmp_path / "sweep", progress=False)

    def acc(f):
        correct = 0
        for i, (x, y) in enumerate(data):
            if f is not None:
                x = frequency_noise(x, f, eps=2.0, generator=torch.Generator().manual_seed(5 + i))
            correct += int((model(x).argmax(-1) == y).sum())
        return 100.0 * correct / 10

    with torch.no_grad():
        clean = acc(None)
        noisy = [acc(f) for f in freqs]
    assert res.clean_accuracy == pytest.approx(clean)
    assert res.noisy_accuracy == pytest.approx(noisy)
    assert res.delta_accuracy == pytest.approx([a - clean for a in noisy])
    assert res.num_samples == 10 and res.to_dict()["freqs"] == freqs
    model.calls = 0
    again = noise_robustness(model, data, freqs, eps=2.0, seed=5, out=tmp_path / "sweep", progress=False)
    assert model.calls == 0 and again.to_dict() == res.to_dict()  # resumed from disk
    with pytest.raises(ValueError, match="another sweep"):
        noise_robustness(model, data, freqs, eps=1.0, seed=5, out=tmp_path / "sweep", progress=False)
    res.plot().savefig(tmp_path / "noise.png")
    with pytest.raises(ValueError, match="freqs"):
        noise_robustness(model, data, [-1.0], progress=False)
    one_shot = iter(data)  # a one-shot iterator is reused for every frequency
    assert noise_robustness(model, one_shot, freqs, eps=2.0, seed=5, progress=False).noisy_accuracy == \
        pytest.approx(noisy)

"""docs/methods.md §5 intervals of the feature analyses: per-batch pieces, bootstrap over batches and summary()
checked against direct formulas (torch.fft / torch.var on the resampled batches) on tiny data."""
import json
import math

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from fastvit_analysis import extract_features, fourier_analysis, variance_analysis
from fastvit_analysis.common.intervals import bootstrap_indices
from fastvit_analysis.features.extract import to_feature_map
from fastvit_analysis.features.statistics import feature_statistics

SIZES = [3, 5, 4, 6, 2, 5, 3, 4, 4]  # 9 uneven batches: enough for intervals (>= 8)
R = 200


def _vit():
    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2,
                             num_classes=3).eval()


def _loader(sizes=SIZES):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, 16, 16, generator=g), torch.zeros(n, dtype=torch.long)) for n in sizes]


def _maps(model, x, name):
    feats = extract_features(model, x)
    z = feats[name]
    return to_feature_map(z, feats.num_prefix_tokens[name]).to(torch.float64) if z.ndim == 3 else z.double()


def _diag_log_amplitude(maps):
    """a(k), k = 0 .. ceil(n/2)-1, of a stack of maps (B, C, n, n) straight from torch.fft."""
    n = maps.shape[-1]
    a = torch.log(torch.fft.fft2(maps).abs() + 1e-6).mean(dim=(0, 1))
    return torch.stack([a[k, k] for k in range((n + 1) // 2)])


def _percentiles(reps):
    lo, hi = np.quantile(np.asarray(reps), [0.025, 0.975], axis=0)
    return np.stack([lo, hi], axis=-1)


@pytest.fixture(scope="module")
def setup():
    model, data = _vit(), _loader()
    fourier, variance = feature_statistics(model, data, progress=False, num_resamples=R)
    return model, data, fourier, variance


def test_fourier_batch_pieces_and_bootstrap_match_direct_formula(setup):
    model, data, res, _ = setup
    assert res.num_batches == len(SIZES) and res.batch_sizes == SIZES
    name = res.names[-1]
    maps = [_maps(model, x, name) for x, _ in data]
    per_batch = torch.stack([_diag_log_amplitude(m) for m in maps]).numpy()
    np.testing.assert_allclose(res.batch_log_amplitude[-1], per_batch, rtol=1e-5, atol=1e-5)
    # the interval: resample whole batches, concatenate their maps, Δ from torch.fft directly
    reps = []
    for idx in bootstrap_indices(len(SIZES), R, seed=0):
        a = _diag_log_amplitude(torch.cat([maps[i] for i in idx]))
        reps.append((a - a[0]).numpy())
    expected = _percentiles(reps)
    np.testing.assert_allclose(np.asarray(res.delta_ci95[-1]), expected, rtol=1e-5, atol=1e-5)
    s = res.summary()["high_frequency/last"]
    assert s.n == len(SIZES) and s.value == res.high_frequency[-1]
    assert s.ci95 == pytest.approx(tuple(expected[-1]), abs=1e-5)
    assert s.ci95[0] <= s.value <= s.ci95[1]
    # per-batch Δ at the highest frequency, weighted by batch size, is the pooled value
    hf = res.batch_high_frequency
    assert hf.shape == (len(SIZES), len(res.names))
    np.testing.assert_allclose(np.average(hf, axis=0, weights=SIZES), res.high_frequency, rtol=1e-9, atol=1e-12)


def test_variance_batch_pieces_and_bootstrap_match_direct_formula(setup):
    model, data, _, res = setup
    name = res.names[-1]
    maps = [_maps(model, x, name) for x, _ in data]
    per_batch = [m.flatten(2).var(dim=-1).mean().item() for m in maps]
    np.testing.assert_allclose(np.asarray(res.batch_variance)[:, -1], per_batch, rtol=1e-5)
    reps = [torch.cat([maps[i] for i in idx]).flatten(2).var(dim=-1).mean().item()
            for idx in bootstrap_indices(len(SIZES), R, seed=0)]
    expected = _percentiles(reps)
    s = res.summary()["variance/last"]
    assert s.n == len(SIZES) and s.value == res.variance[-1]
    assert s.ci95 == pytest.approx(tuple(expected), rel=1e-5)
    assert list(res.summary()) == ["variance/last"] + [f"variance/{n}" for n in res.names]


def test_summaries_serialise_and_are_deterministic(setup):
    model, data, fourier, variance = setup
    again_f, again_v = feature_statistics(model, data, progress=False, num_resamples=R)
    assert json.dumps(fourier.to_dict()) == json.dumps(again_f.to_dict())
    assert json.dumps(variance.to_dict()) == json.dumps(again_v.to_dict())
    d = json.loads(json.dumps(fourier.to_dict()))
    last = d["summary"]["high_frequency/last"]
    assert set(last) == {"value", "ci95", "n"} and last["n"] == len(SIZES) and None not in last["ci95"]
    other = fourier_analysis(model, data, progress=False, num_resamples=R, bootstrap_seed=1)
    assert other.delta_log_amplitude == fourier.delta_log_amplitude
    assert other.delta_ci95 != fourier.delta_ci95


def test_fewer_than_eight_batches_give_nan_intervals():
    model = _vit()
    res = variance_analysis(model, _loader([4, 4, 4]), progress=False)
    s = res.summary()["variance/last"]
    assert s.n == 3 and all(math.isnan(c) for c in s.ci95)
    single = fourier_analysis(model, _loader([8])[0], progress=False)
    e = single.to_dict()["summary"]["high_frequency/last"]
    assert e["n"] == 1 and e["ci95"] == [None, None] and e["value"] is not None


def test_radial_spectrum_intervals():
    model = _vit()
    res = fourier_analysis(model, _loader(), spectrum="radial", progress=False, num_resamples=R)
    ci = np.asarray(res.delta_ci95[-1])
    delta = np.asarray(res.delta_log_amplitude[-1])
    assert ci.shape == (len(delta), 2) and (ci[:, 0] <= delta + 1e-12).all() and (delta <= ci[:, 1] + 1e-12).all()
    np.testing.assert_allclose(np.average(np.asarray(res.batch_log_amplitude[-1]), axis=0, weights=SIZES),
                               res.log_amplitude[-1], rtol=1e-9)


def test_bad_num_resamples():
    with pytest.raises(ValueError, match="num_resamples must be an integer >= 200"):
        fourier_analysis(_vit(), _loader(), progress=False, num_resamples=50)
    with pytest.raises(ValueError, match="num_resamples must be an integer >= 200"):
        variance_analysis(_vit(), _loader(), progress=False, num_resamples=10)


# --- CKA -----------------------------------------------------------------------------------

def _hsic1(k, l):
    """Unbiased HSIC₁ straight from the formula (docs/methods.md §3c), numpy float64."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    one = np.ones(n)
    return (np.sum(k * l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (k @ one) @ (l @ one)) / (n * (n - 3))


def test_cka_batch_hsic_bootstrap_and_stage_means_match_direct_formula():
    from fastvit_analysis import minibatch_cka

    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2,
                              num_classes=3).eval()
    sizes = [4, 5, 6, 4, 5, 4, 6, 5, 4]
    data = _loader(sizes)
    stages = [0, 0, 0, 1, 1]
    res = minibatch_cka(model, data, progress=False, stages=stages, num_resamples=R)
    assert len(res.names_a) == 5 and res.num_batches == len(sizes)
    grams = []
    for x, _ in data:
        feats = extract_features(model, x)
        flat = [feats[name].double().reshape(x.shape[0], -1).numpy() for name in res.names_a]
        grams.append([f @ f.T for f in flat])
    hsic = np.array([[[_hsic1(g[i], g[j]) for j in range(5)] for i in range(5)] for g in grams])  # (B, L, L)
    # float32 features, centred per batch before the Gram (cka.py): the contract is 1e-5 relative
    np.testing.assert_allclose(res.batch_hsic_ab, hsic, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(np.asarray(res.batch_hsic_aa), np.einsum("bii->bi", hsic), rtol=1e-5, atol=1e-9)

    def cka(total):
        d = np.sqrt(np.diag(total))
        return total / np.outer(d, d)

    same = np.equal.outer(stages, stages)
    within, between = same & ~np.eye(5, dtype=bool), ~same
    reps_m, reps_s = [], []
    for idx in bootstrap_indices(len(sizes), R, seed=0):
        m = cka(hsic[idx].sum(0))
        reps_m.append(m)
        reps_s.append([m[within].mean(), m[between].mean(), m[within].mean() - m[between].mean()])
    np.testing.assert_allclose(np.asarray(res.matrix_ci95), _percentiles(reps_m), rtol=1e-6, atol=1e-9)
    summary = res.summary()
    full = cka(hsic.sum(0))
    for key, value, ci in zip(("cka/within_stage", "cka/between_stage", "cka/within_minus_between"),
                              (full[within].mean(), full[between].mean(), full[within].mean() - full[between].mean()),
                              _percentiles(reps_s)):
        e = summary[key]
        assert e.n == len(sizes)
        # absolute: CKA entries are O(1); their difference is small, its float32-Gram error is not
        assert e.value == pytest.approx(value, rel=0, abs=1e-6)
        assert e.ci95 == pytest.approx(tuple(ci), rel=0, abs=1e-6)
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d["summary"]) == {"cka/mean_off_diagonal", "cka/within_stage", "cka/between_stage",
                                 "cka/within_minus_between"}
    again = minibatch_cka(model, data, progress=False, stages=stages, num_resamples=R)
    assert json.dumps(again.to_dict()) == json.dumps(res.to_dict())
    with pytest.raises(ValueError, match="stages: one label per latent"):
        minibatch_cka(model, data, progress=False, stages=[0, 1])
    # None = in no stage: the stem's pairs are left out of both means
    part = res.stage_means([None, 0, 0, 1, 1])
    sub = np.ix_([1, 2, 3, 4], [1, 2, 3, 4])
    same4 = np.equal.outer([0, 0, 1, 1], [0, 0, 1, 1])
    w4, b4 = full[sub][same4 & ~np.eye(4, dtype=bool)].mean(), full[sub][~same4].mean()
    assert part["cka/within_minus_between"].value == pytest.approx(w4 - b4, rel=0, abs=1e-6)


# --- noise robustness ----------------------------------------------------------------------

def test_noise_summary_matches_direct_per_image_loop():
    from scipy import stats

    from fastvit_analysis import frequency_noise, noise_robustness
    from fastvit_analysis.common.intervals import paired_difference

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (20, 17, 23)]
    freqs = [0.2 * math.pi, 0.6 * math.pi, 0.8 * math.pi]
    res = noise_robustness(model, data, freqs, eps=2.0, seed=3, progress=False)

    def correct(f):
        out = []
        with torch.no_grad():
            for i, (x, y) in enumerate(data):
                if f is not None:
                    x = frequency_noise(x, f, eps=2.0, generator=torch.Generator().manual_seed(3 + i))
                out.append(model(x).argmax(-1) == y)
        return torch.cat(out).numpy()

    clean = correct(None)
    noisy = [correct(f) for f in freqs]
    np.testing.assert_array_equal(res.correct(), np.stack([clean] + noisy))
    s = res.summary()
    n = len(clean)
    wilson = stats.binomtest(int(clean.sum()), n).proportion_ci(method="wilson")
    assert s["clean_accuracy"].value == pytest.approx(100 * clean.mean()) and s["clean_accuracy"].n == n
    assert s["clean_accuracy"].ci95 == pytest.approx((100 * wilson.low, 100 * wilson.high))
    for f, row in zip(freqs, noisy):
        e = s[f"delta_accuracy/{f / math.pi:.3g}pi"]
        assert e.value == pytest.approx(100 * (row.mean() - clean.mean()))
        assert e.ci95 == pytest.approx(paired_difference(clean, row, scale=100).ci95)
    high = s["delta_accuracy/high"]
    direct = 100 * ((noisy[1].astype(float) + noisy[2]) / 2 - clean).mean()
    assert high.value == pytest.approx(direct) and high.n == n and high.ci95[0] <= high.value <= high.ci95[1]
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d["summary"]) == {"clean_accuracy", "delta_accuracy/0.2pi", "delta_accuracy/0.6pi",
                                 "delta_accuracy/0.8pi", "delta_accuracy/high"}
    again = noise_robustness(model, data, freqs, eps=2.0, seed=3, progress=False)
    assert json.dumps(again.to_dict()) == json.dumps(res.to_dict())
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.container import ErrorbarContainer

    assert any(isinstance(c, ErrorbarContainer) for c in res.plot().axes[0].containers)


def test_figures_draw_interval_bands(setup):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection

    _, _, fourier, variance = setup
    for fig in (fourier.plot(), fourier.plot_high_frequency(), variance.plot()):
        ax = fig.axes[0]
        assert any(isinstance(c, PolyCollection) for c in ax.collections)  # the 95% band
    single = variance_analysis(_vit(), _loader([4])[0], progress=False)  # NaN interval: no band
    assert not [c for c in single.plot().axes[0].collections if isinstance(c, PolyCollection)]

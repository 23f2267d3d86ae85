"""evaluate_claims: every claim on constructed results with a known answer (supported, not supported,
inconclusive), "not measured" for a missing input, JSON/markdown output and determinism."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fastvit_analysis.claims import CLAIMS, evaluate_claims, stage_of
from fastvit_analysis.common.intervals import Estimate, bootstrap_indices
from fastvit_analysis.curvature.max_eigen import MaxEigenvalueSpectrumResult
from fastvit_analysis.features.cka import CKAResult
from fastvit_analysis.features.fourier import FourierResult
from fastvit_analysis.features.variance import VarianceResult
from fastvit_analysis.landscape.grid import LandscapeResult

ROLES = {"cnn": "resnet", "vit": "vit", "alternet": "alt"}


def claims(results, roles=ROLES, **kw):
    full = {label: {} for label in ("resnet", "vit", "alt")}
    for label, r in results.items():
        full[label].update(r)
    return evaluate_claims(full, roles=roles, num_resamples=kw.pop("num_resamples", 500), **kw)


# --------------------------------------------------------------------------------------- C1
def landscape(curvature: float, spread: float, seed: int, batches: int = 12, size: int = 8) -> LandscapeResult:
    """Per batch b the loss is k_b·(a² + b²) + 1 with k_b = curvature·(1 + spread·u_b)."""
    a = np.linspace(-1, 1, 5)
    bowl = np.add.outer(a ** 2, a ** 2)
    k = curvature * (1 + spread * np.random.default_rng(seed).uniform(-1, 1, batches))
    per_batch = size * (k[None, None, :] * bowl[..., None] + 1.0)
    nll = per_batch.sum(-1) / (size * batches)
    return LandscapeResult([a, a], nll, nll, np.full_like(nll, np.nan), np.zeros_like(nll),
                           num_samples=size * batches, batch_loss_sum=per_batch, batch_correct=None,
                           batch_sizes=[size] * batches)


def test_c1_flatness_supported_not_supported_inconclusive():
    border = np.add.outer(np.linspace(-1, 1, 5) ** 2, np.linspace(-1, 1, 5) ** 2)
    ring = np.ones((5, 5), bool)
    ring[1:-1, 1:-1] = False
    mean_border = border[ring].mean()                 # the rise of a unit bowl
    flat, steep = landscape(1.0, 0.2, 0), landscape(3.0, 0.2, 1)
    row = claims({"vit": {"landscape": flat}, "resnet": {"landscape": steep}}).row("C1")
    exact = flat.loss[ring].mean() - flat.loss[2, 2] - (steep.loss[ring].mean() - steep.loss[2, 2])
    assert row.contrast.value == pytest.approx(exact) and exact == pytest.approx(-2.0 * mean_border, rel=0.2)
    assert row.verdict == "supported" and row.expected_sign == -1 and row.contrast.n == 12
    assert "paired bootstrap over 12 data batches" in row.detail
    assert claims({"vit": {"landscape": steep}, "resnet": {"landscape": flat}}).row("C1").verdict == "not supported"
    # the same batches in another order: contrast exactly 0 with a real interval around it
    a = landscape(2.0, 0.5, 0)
    b = landscape(2.0, 0.5, 0)
    b.batch_loss_sum = b.batch_loss_sum[..., ::-1].copy()
    same = claims({"vit": {"landscape": a}, "resnet": {"landscape": b}}).row("C1")
    assert same.contrast.value == pytest.approx(0.0, abs=1e-12) and same.contrast.ci95[0] < 0 < same.contrast.ci95[1]
    assert same.verdict == "inconclusive"


def test_c1_paired_bootstrap_equals_an_explicit_loop_and_accepts_json():
    flat, steep = landscape(1.0, 0.3, 0), landscape(1.5, 0.3, 0)
    row = claims({"vit": {"landscape": json.loads(json.dumps(flat.to_dict()))},
                  "resnet": {"landscape": steep}}, num_resamples=300).row("C1")
    ring = flat.border_mask
    reps = []
    for idx in bootstrap_indices(12, 300, seed=0):
        rise = [(r.batch_loss_sum[..., idx].sum(-1)[ring].mean() - r.batch_loss_sum[2, 2, idx].sum()) / (8 * 12)
                for r in (flat, steep)]
        reps.append(rise[0] - rise[1])
    assert row.contrast.ci95 == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))


# ----------------------------------------------------------------------------------- C2, C3
def spectrum(neg_prob: float, pos_scale: float, seed: int, n: int = 64) -> MaxEigenvalueSpectrumResult:
    rng = np.random.default_rng(seed)
    sign = np.where(rng.random((n, 5)) < neg_prob, -1.0, 1.0)
    v = torch.as_tensor(sign * pos_scale * rng.uniform(0.5, 1.5, (n, 5)))
    return MaxEigenvalueSpectrumResult(v, torch.zeros_like(v), torch.ones_like(v, dtype=torch.bool),
                                 float((v < 0).double().mean()), float(v[v > 0].mean()), 16, "LM", 0)


def test_c2_c3_from_the_max_eigenvalue_spectra():
    vit, cnn = spectrum(0.4, 1.0, 0), spectrum(0.05, 5.0, 1)
    res = claims({"vit": {"max_eigen": vit}, "resnet": {"max_eigen": cnn}})
    c2, c3 = res.row("C2"), res.row("C3")
    v, c = vit.eigenvalues.numpy(), cnn.eigenvalues.numpy()
    assert c2.contrast.value == pytest.approx((v < 0).mean() - (c < 0).mean())
    assert c3.contrast.value == pytest.approx(v[v > 0].mean() - c[c > 0].mean())
    assert (c2.verdict, c3.verdict) == ("supported", "supported")
    res = claims({"vit": {"max_eigen": cnn}, "resnet": {"max_eigen": vit}})
    assert (res.row("C2").verdict, res.row("C3").verdict) == ("not supported", "not supported")
    # the same pooled values in another mini-batch order: contrast exactly 0, a real interval around it
    same = spectrum(0.2, 1.0, 2)
    shuffled = MaxEigenvalueSpectrumResult(same.eigenvalues.flip(0), same.residuals, same.converged, 0.2, 1.0, 16,
                                           "LM", 0)
    res = claims({"vit": {"max_eigen": same}, "resnet": {"max_eigen": shuffled}})
    for cid in ("C2", "C3"):
        e = res.row(cid).contrast
        assert e.value == pytest.approx(0.0, abs=1e-12) and e.ci95[0] < 0 < e.ci95[1]
        assert res.row(cid).verdict == "inconclusive"
    # unequal mini-batch counts: resampled independently
    res = claims({"vit": {"max_eigen": spectrum(0.4, 1.0, 0, n=40)}, "resnet": {"max_eigen": cnn}})
    assert "independent bootstrap over 64 and 40 mini-batches" in res.row("C2").detail


# ----------------------------------------------------------------------------------- C4, C6
def block_result(kinds: list[str], highs: list[float], cls=FourierResult, names=None):
    names = names or [f"blocks.{i}" for i in range(len(kinds))]
    depths = list(np.linspace(0, 1, len(kinds)))
    if cls is FourierResult:
        return FourierResult(names, kinds, depths, [[0.0, math.pi]] * len(kinds), [[0.0, h] for h in highs],
                             [[0.0, h] for h in highs])
    return VarianceResult(names, kinds, depths, highs)


def alternating(kinds, msa_step, other_step, start=0.0):
    values, v = [start], start
    for k in kinds[1:]:
        v += msa_step if k == "msa" else other_step
        values.append(v)
    return values


VIT_KINDS = ["embed"] + ["msa", "mlp"] * 12
CNN_KINDS = ["embed"] + ["conv"] * 16


def test_c4_per_block_counts_and_last_block_point_value():
    vit = block_result(VIT_KINDS, alternating(VIT_KINDS, -1.0, +0.5))     # MSA lower, MLP raise
    cnn = block_result(CNN_KINDS, alternating(CNN_KINDS, 0.0, +0.1))
    res = claims({"vit": {"fourier": vit}, "resnet": {"fourier": cnn}})
    msa, conv, last = res.row("C4.msa"), res.row("C4.conv"), res.row("C4")
    assert msa.verdict == "supported" and msa.contrast.n == 12 and msa.contrast.value == pytest.approx(0.5)
    assert conv.verdict == "supported" and conv.contrast.n == 28          # 12 MLP + 16 Conv blocks
    assert "vit 12/12" in msa.detail and "resnet 16/16" in conv.detail
    assert last.contrast.value == pytest.approx(vit.delta_log_amplitude[-1][-1] - cnn.delta_log_amplitude[-1][-1])
    # no per-batch data and no summary interval: a point value only, which decides nothing
    assert last.verdict == "inconclusive" and "no interval" in last.detail
    rev = claims({"vit": {"fourier": block_result(VIT_KINDS, alternating(VIT_KINDS, +1.0, -0.5))},
                  "resnet": {"fourier": block_result(CNN_KINDS, alternating(CNN_KINDS, 0.0, -0.1))}})
    assert (rev.row("C4.msa").verdict, rev.row("C4.conv").verdict) == ("not supported", "not supported")
    # half the MSA blocks each way: inconclusive
    mixed = [0.0]
    for i, _k in enumerate(VIT_KINDS[1:]):
        mixed.append(mixed[-1] + (1.0 if (i // 2) % 2 else -1.0))
    assert claims({"vit": {"fourier": block_result(VIT_KINDS, mixed)}}).row("C4.msa").verdict == "inconclusive"


def fourier_batches(last_high: float, sd: float, seed: int, batches: int = 10) -> FourierResult:
    """Two latents; per batch the last latent's log amplitude is [0, last_high + noise_b]."""
    rng = np.random.default_rng(seed)
    sizes = [8] * (batches - 1) + [5]
    amp_last = [[0.0, last_high + sd * rng.normal()] for _ in range(batches)]
    amp_first = [[0.0, 0.0]] * batches
    w = np.asarray(sizes, float)
    mean = float((w * np.array([a[1] for a in amp_last])).sum() / w.sum())
    return FourierResult(["patch_embed", "blocks.0:msa"], ["embed", "msa"], [0.0, 1.0], [[0.0, math.pi]] * 2,
                         [[0.0, 0.0], [0.0, mean]], [[0.0, 0.0], [0.0, mean]], num_batches=batches,
                         batch_sizes=sizes, batch_log_amplitude=[amp_first, amp_last])


def test_c4_paired_bootstrap_over_fourier_batches():
    vit, cnn = fourier_batches(-2.0, 0.3, 0), fourier_batches(0.5, 0.3, 1)
    row = claims({"vit": {"fourier": vit}, "resnet": {"fourier": cnn}}, num_resamples=300).row("C4")
    assert row.contrast.value == pytest.approx(vit.high_frequency[-1] - cnn.high_frequency[-1])
    assert row.verdict == "supported" and "paired bootstrap over 10 data batches" in row.detail
    w = np.asarray(vit.batch_sizes, float)
    hv = np.array([a[1] for a in vit.batch_log_amplitude[-1]])
    hc = np.array([a[1] for a in cnn.batch_log_amplitude[-1]])
    reps = [(w[i] * hv[i]).sum() / w[i].sum() - (w[i] * hc[i]).sum() / w[i].sum()
            for i in bootstrap_indices(10, 300)]
    assert row.contrast.ci95 == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))
    assert claims({"vit": {"fourier": cnn}, "resnet": {"fourier": vit}}).row("C4").verdict == "not supported"


def test_c4_uses_summary_intervals_as_independent_errors_without_batches():
    def make(h):
        d = block_result(["embed", "msa"], [0.0, h]).to_dict()
        d.pop("batch_log_amplitude")
        d["summary"] = {"high_frequency/last": {"value": h, "ci95": [h - 0.3, h + 0.4], "n": 16}}
        return d
    row = claims({"vit": {"fourier": make(-2.0)}, "resnet": {"fourier": make(0.0)}}).row("C4")
    half = math.hypot(0.35, 0.35)
    assert row.contrast.value == pytest.approx(-2.0)
    assert row.contrast.ci95 == pytest.approx((-2.0 - half, -2.0 + half))
    assert row.verdict == "supported" and "independent normal" in row.detail


def test_c6_variance_blocks_and_resnet_stage_ends():
    vit = block_result(VIT_KINDS, alternating(VIT_KINDS, -1.0, +2.0), cls=VarianceResult)
    names = ["conv1"] + [f"layer{s}.{i}" for s in range(1, 5) for i in range(4)]
    variance = [1.0]
    for _s in range(4):                                 # rises within a stage, drops at the next stage
        variance += [1.0 + i for i in range(4)]
    cnn = block_result(CNN_KINDS, variance, cls=VarianceResult, names=names)
    res = claims({"vit": {"variance": vit}, "resnet": {"variance": cnn}})
    assert res.row("C6.msa").verdict == "supported"
    conv = res.row("C6.conv")                           # 12 MLP up + 12 of 16 Conv up (4 stage starts drop)
    assert conv.contrast.value == pytest.approx(24 / 28 - 0.5) and conv.verdict == "supported"
    stage = res.row("C6.stage")
    assert stage.contrast.value == pytest.approx(0.5) and stage.contrast.n == 4
    # 4/4 stages: Wilson lower bound 0.51 -> just supported; peaks at stage starts -> not supported
    assert stage.verdict == "supported"
    flipped = block_result(CNN_KINDS, [1.0] + [4.0 - i for _ in range(4) for i in range(4)], cls=VarianceResult,
                           names=names)
    assert claims({"resnet": {"variance": flipped}}).row("C6.stage").verdict == "not supported"


# ---------------------------------------------------------------------------------------- C5
def noise(clean_acc: float, high_drop: float, seed: int, n: int = 2000) -> dict:
    rng = np.random.default_rng(seed)
    freqs = [0.1 * math.pi * k for k in range(1, 10)]
    clean = rng.random(n) < clean_acc
    noisy = np.stack([clean & (rng.random(n) >= (high_drop if f >= 0.6 * math.pi - 1e-9 else 0.0))
                      for f in freqs])
    delta = [100.0 * (row.mean() - clean.mean()) for row in noisy]
    return {"freqs": freqs, "delta_accuracy": delta, "clean_correct": clean.tolist(),
            "noisy_correct": noisy.tolist(), "num_samples": n}


def test_c5_reads_the_noise_result_per_image_strings():
    from fastvit_analysis.features.noise import NoiseRobustnessResult

    def result(d):
        bits = lambda row: "".join("1" if b else "0" for b in row)  # noqa: E731
        return NoiseRobustnessResult(d["freqs"], d["delta_accuracy"], [0.0] * 9, 90.0, 0.1, 0.2, d["num_samples"],
                                     clean_correct=bits(d["clean_correct"]),
                                     noisy_correct=[bits(r) for r in d["noisy_correct"]])
    vit, cnn = noise(0.9, 0.02, 0, n=500), noise(0.9, 0.3, 1, n=500)
    a = claims({"vit": {"robustness": result(vit)}, "resnet": {"robustness": result(cnn)}}).row("C5")
    b = claims({"vit": {"robustness": vit}, "resnet": {"robustness": cnn}}).row("C5")
    assert a.contrast == b.contrast and a.verdict == "supported"
    assert a.contrast.value == pytest.approx(result(vit).per_image_delta().mean()
                                             - result(cnn).per_image_delta().mean())


def test_c5_paired_over_images():
    vit, cnn = noise(0.9, 0.02, 0), noise(0.9, 0.3, 1)
    row = claims({"vit": {"robustness": vit}, "resnet": {"robustness": cnn}}).row("C5")
    exact = np.mean(vit["delta_accuracy"][5:]) - np.mean(cnn["delta_accuracy"][5:])
    assert row.contrast.value == pytest.approx(exact)
    assert row.verdict == "supported" and row.contrast.n == 2000 and "test images" in row.detail
    assert claims({"vit": {"robustness": cnn}, "resnet": {"robustness": vit}}).row("C5").verdict == "not supported"
    # the same images in another order: contrast exactly 0, interval around it
    a = noise(0.9, 0.1, 2)
    b = dict(a, clean_correct=a["clean_correct"][::-1], noisy_correct=[r[::-1] for r in a["noisy_correct"]])
    same = claims({"vit": {"robustness": a}, "resnet": {"robustness": b}}).row("C5")
    assert same.contrast.value == pytest.approx(0.0, abs=1e-9) and same.contrast.ci95[0] < 0 < same.contrast.ci95[1]
    assert same.verdict == "inconclusive"


# ---------------------------------------------------------------------------------------- C7
def cka(within: float, between: float, noise_sd: float, batches: int = 16, seed: int = 0) -> CKAResult:
    """A ResNet-like self-CKA: stem + 3 stages of 3 blocks; per batch HSIC(K,K) = HSIC(L,L) = 1 and
    HSIC(K,L) = the block-structured base + noise, so the pooled CKA is the batch mean."""
    names = ["conv1"] + [f"layer{s}.{i}" for s in range(1, 4) for i in range(3)]
    stages = [stage_of(n) for n in names]
    L = len(names)
    base = np.array([[1.0 if i == j else within if stages[i] == stages[j] and stages[i] else between
                      for j in range(L)] for i in range(L)])
    rng = np.random.default_rng(seed)
    ab = np.clip(base[None] + noise_sd * rng.normal(size=(batches, L, L)), 0, 1)
    ones = np.ones((batches, L))
    kinds = ["embed"] + ["conv"] * 9
    return CKAResult(names, names, kinds, kinds, ab.mean(0).tolist(), batches, 16 * batches,
                     batch_hsic_ab=ab.tolist(), batch_hsic_aa=ones.tolist(), batch_hsic_bb=ones.tolist())


def test_c7_within_minus_between_stage_cka():
    good = cka(0.8, 0.3, 0.1)
    row = claims({"resnet": {"cka": good}}, num_resamples=300).row("C7.cnn")
    m = np.asarray(good.matrix)
    st = [stage_of(n) for n in good.names_a]
    within = [m[i, j] for i in range(10) for j in range(10) if i != j and st[i] and st[i] == st[j]]
    between = [m[i, j] for i in range(10) for j in range(10) if st[i] and st[j] and st[i] != st[j]]
    assert row.contrast.value == pytest.approx(np.mean(within) - np.mean(between))
    assert row.verdict == "supported" and row.contrast.n == 16 and "bootstrap over 16 batches" in row.detail
    # the interval against an explicit loop over resampled batches (the stem is no stage: left out)
    ab = np.asarray(good.batch_hsic_ab)
    keep = np.arange(1, 10)
    same = np.array([[st[i] == st[j] for j in keep] for i in keep])
    off = ~np.eye(9, dtype=bool)
    reps = []
    for idx in bootstrap_indices(16, 300):
        c = ab[idx].mean(0)[np.ix_(keep, keep)]
        reps.append(c[same & off].mean() - c[~same].mean())
    assert row.contrast.ci95 == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))
    assert claims({"resnet": {"cka": cka(0.3, 0.8, 0.1)}}).row("C7.cnn").verdict == "not supported"
    # the same batches with the block structure shuffled away: contrast 0 -> inconclusive
    flat = cka(0.5, 0.5, 0.3)
    assert claims({"resnet": {"cka": json.loads(json.dumps(flat.to_dict()))}}).row("C7.cnn").verdict == "inconclusive"
    # a single-stage model (ViT names) cannot show it: not measured
    vit = cka(0.8, 0.3, 0.1)
    vit.names_a = vit.names_b = [f"blocks.{i}" for i in range(10)]
    assert claims({"alt": {"cka": vit}}).row("C7.alternet").verdict == "not measured"
    # without per-batch data: the point value, inconclusive
    bare = CKAResult(good.names_a, good.names_b, good.kinds_a, good.kinds_b, good.matrix)
    r = claims({"resnet": {"cka": bare}}).row("C7.cnn")
    assert r.contrast.value == pytest.approx(row.contrast.value) and r.verdict == "inconclusive"
    assert "no interval" in r.detail


# ---------------------------------------------------------------------------------------- C8
def test_c8_paired_over_the_same_images_is_tighter_than_independent():
    rng = np.random.default_rng(0)
    base = rng.random(3000) < 0.8
    alt = base | (rng.random(3000) < 0.05)             # the same images right, plus a few more
    cnn = base.copy()
    vit = base & (rng.random(3000) >= 0.02)
    paired = claims({"alt": {"accuracy": alt}, "resnet": {"accuracy": cnn}, "vit": {"accuracy": vit}}).row("C8")
    exact = min(100 * (alt.mean() - cnn.mean()), 100 * (alt.mean() - vit.mean()))
    assert paired.contrast.value == pytest.approx(exact) and paired.verdict == "supported"
    assert "paired" in paired.detail and paired.contrast.n == 3000
    counts = claims({"alt": {"accuracy": (int(alt.sum()), 3000)}, "resnet": {"accuracy": (int(cnn.sum()), 3000)},
                     "vit": {"accuracy": Estimate(100 * vit.mean(), (0, 100), 3000)}}).row("C8")
    assert counts.contrast.value == pytest.approx(exact) and "independent" in counts.detail
    width = lambda e: e.ci95[1] - e.ci95[0]  # noqa: E731
    assert width(paired.contrast) < 0.5 * width(counts.contrast)
    worse = claims({"alt": {"accuracy": (700, 1000)}, "resnet": {"accuracy": (850, 1000)},
                    "vit": {"accuracy": (800, 1000)}}).row("C8")
    assert worse.verdict == "not supported"
    tie = claims({"alt": {"accuracy": (850, 1000)}, "resnet": {"accuracy": (850, 1000)},
                  "vit": {"accuracy": (800, 1000)}}).row("C8")
    assert tie.verdict == "inconclusive"


# ------------------------------------------------------------------------------ missing, output
def test_every_claim_not_measured_without_inputs_and_missing_roles():
    res = claims({})
    assert [r.id for r in res.rows] == list(CLAIMS)
    assert {r.verdict for r in res.rows} == {"not measured"}
    assert all(r.contrast is None and r.detail.startswith("missing:") for r in res.rows)
    # one model of a pair missing its result: not measured, naming what is missing
    row = claims({"vit": {"max_eigen": spectrum(0.4, 1.0, 0)}}).row("C2")
    assert row.verdict == "not measured" and "'resnet'" in row.detail
    row = claims({"alt": {"accuracy": (9, 10)}, "resnet": {"accuracy": (8, 10)}},
                 roles={"cnn": "resnet", "alternet": "alt"}).row("C8")
    assert row.verdict == "not measured" and "'vit'" in row.detail


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="roles: unknown role 'transformer'"):
        evaluate_claims({"a": {}}, roles={"transformer": "a"})
    with pytest.raises(ValueError, match=r"roles\['cnn'\] = 'b' is not a label"):
        evaluate_claims({"a": {}}, roles={"cnn": "b"})
    with pytest.raises(TypeError, match="results"):
        evaluate_claims({"a": 3}, roles={})
    with pytest.raises(ValueError, match="accuracy"):
        evaluate_claims({"a": {"accuracy": [0.5, 0.7, 2.0]}, "b": {"accuracy": (1, 2)}, "c": {"accuracy": (1, 2)}},
                        roles={"alternet": "a", "cnn": "b", "vit": "c"})


def test_json_markdown_and_same_digits_on_a_rerun(tmp_path):
    inputs = {"vit": {"landscape": landscape(1.0, 0.2, 0), "max_eigen": spectrum(0.4, 1.0, 0),
                      "accuracy": (800, 1000)},
              "resnet": {"landscape": landscape(3.0, 0.2, 1), "max_eigen": spectrum(0.05, 5.0, 1),
                         "accuracy": (850, 1000)},
              "alt": {"accuracy": (900, 1000)}}
    a, b = claims(inputs), claims(inputs)
    path = a.save_json(tmp_path / "claims.json")
    d = json.loads(path.read_text())
    provenance = d.pop("provenance")
    assert d == b.to_dict()
    assert provenance["package"] and provenance["torch"] and provenance["world_size"] == 1
    assert d["rows"][0]["id"] == "C1" and set(d["rows"][0]["contrast"]) == {"value", "ci95", "n"}
    assert d["roles"] == ROLES
    md = a.to_markdown()
    lines = md.strip().splitlines()
    assert lines[0] == "| claim | contrast [lo, hi] | verdict | detail |"
    assert len(lines) == 2 + len(CLAIMS)
    c1 = a.row("C1").contrast
    assert f"{c1.value:.3g} [{c1.ci95[0]:.3g}, {c1.ci95[1]:.3g}] (n=12) | supported" in md


def test_stage_of():
    assert stage_of("layer2.1") == "layer2"
    assert stage_of("stages.1.blocks.0") == "stages.1"
    assert stage_of("stages.3.downsample") == "stages.3"
    assert stage_of("blocks.3:msa") is None and stage_of("conv1") is None


def test_end_to_end_on_real_tiny_results_and_from_their_json():
    from torch import nn

    from fastvit_analysis import evaluate_claims as exported
    from fastvit_analysis import loss_landscape, max_eigenvalue_spectrum

    ce = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (64,), generator=g)
    data = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)]          # 8 batches: intervals form
    results = {}
    for label, width in (("resnet", 6), ("vit", 3)):
        torch.manual_seed(width)
        model = nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 3)).double()
        results[label] = {"landscape": loss_landscape(model, ce, data, steps=3, progress=False),
                          "max_eigen": max_eigenvalue_spectrum(model, ce, data, batch_size=8, top_k=2,
                                                               progress=False)}
    roles = {"cnn": "resnet", "vit": "vit"}
    live = exported(results, roles=roles, num_resamples=300)
    as_json = {k: {a: json.loads(json.dumps(r.to_dict())) for a, r in v.items()} for k, v in results.items()}
    again = exported(as_json, roles=roles, num_resamples=300)
    assert live.to_dict() == again.to_dict()
    for cid in ("C1", "C2", "C3"):
        row = live.row(cid)
        assert row.verdict in ("supported", "not supported", "inconclusive")
        assert row.contrast.n == 8 and all(np.isfinite(row.contrast.ci95))
    assert live.row("C1").contrast.value == pytest.approx(
        results["vit"]["landscape"].summary()["border_rise"].value
        - results["resnet"]["landscape"].summary()["border_rise"].value)


def test_fourier_latents_with_only_the_zero_frequency_are_not_measurements():
    """A 2x2 (or 1x1) last map has Δ log amplitude 0 at its 'highest' frequency by construction: C4 says it
    cannot measure instead of reporting a contrast, and the per-block counts skip those blocks."""
    def fourier(kinds, deltas):
        return {"kinds": kinds, "delta_log_amplitude": deltas, "num_batches": 1}

    inputs = {"vit": {"fourier": fourier(["embed", "msa", "mlp"], [[0.0, 0.0], [0.0, -0.5], [0.0, -0.7]])},
              "resnet": {"fourier": fourier(["embed", "conv", "conv"], [[0.0, 0.0], [0.0, 0.3], [0.0]])}}
    result = claims(inputs, roles={"cnn": "resnet", "vit": "vit"})
    c4 = result.row("C4")
    assert c4.contrast is None and "only the zero frequency" in c4.detail
    conv = result.row("C4.conv")
    # the resnet's 2x2 block is skipped, its other conv block and the ViT's MLP block count
    assert conv.contrast is not None and conv.contrast.n == 2 and "resnet 1/1" in conv.detail

"""The embedded data set: deterministic, balanced, split/seed dependent, class in the low frequencies."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastvit_analysis.data import SYNTHETIC_MEAN, SYNTHETIC_STD, SyntheticShapes, build_dataset, build_transform

pytestmark = pytest.mark.usefixtures("one_thread")



def test_deterministic_from_seed():
    a = SyntheticShapes("train", num_samples=60, seed=3)
    b = SyntheticShapes("train", num_samples=60, seed=3)
    assert np.array_equal(a.data, b.data) and a.targets == b.targets
    c = SyntheticShapes("train", num_samples=60, seed=4)
    assert not np.array_equal(a.data, c.data)
    test = SyntheticShapes("test", num_samples=60, seed=3)
    assert not np.array_equal(a.data, test.data)


def test_balanced_and_shapes():
    ds = SyntheticShapes("train", num_samples=205)
    counts = np.bincount(ds.targets, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 205
    assert ds.data.shape == (205, 32, 32, 3) and ds.data.dtype == np.uint8
    assert len(ds.classes) == 10
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    # fast path equals ToTensor + Normalize of the stored uint8 image
    expected = (torch.from_numpy(ds.data[0]).permute(2, 0, 1).float() / 255
                - torch.tensor(SYNTHETIC_MEAN)[:, None, None]) / torch.tensor(SYNTHETIC_STD)[:, None, None]
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(build_dataset("synthetic", "train", num_samples=205,
                                             transform=build_transform("synthetic"))[0][0], expected)


def test_default_sizes_and_statistics():
    ds = SyntheticShapes("test")
    assert len(ds) == 1000
    x, _ = ds.tensors()
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05


def _nearest_centroid(train_x, train_y, test_x):
    centroids = torch.stack([train_x[train_y == k].mean(0) for k in range(10)])
    return torch.cdist(test_x, centroids).argmin(1)


def _cues(ds):
    """(low-frequency shape features, high-frequency texture features) of every image: the 8×8 average-pooled
    grey image minus its mean, and the amplitude spectrum (phase-free) of what the pooling removed."""
    x, _ = ds.tensors()
    grey = x.mean(1, keepdim=True)
    low = F.avg_pool2d(grey, 4)  # 8×8: frequencies below π/4
    high = grey - F.interpolate(low, scale_factor=4, mode="nearest")
    return (low - low.mean((2, 3), keepdim=True)).abs().flatten(1), torch.fft.fft2(high).abs().flatten(1)


def test_class_lives_in_both_low_frequency_shape_and_high_frequency_texture():
    train, test = SyntheticShapes("train", num_samples=1000), SyntheticShapes("test", num_samples=300)
    (low_tr, high_tr), (low_te, high_te) = _cues(train), _cues(test)
    y_tr, y_te = torch.as_tensor(train.targets), torch.as_tensor(test.targets)
    low_acc = (_nearest_centroid(low_tr, y_tr, low_te) == y_te).float().mean().item()
    high_acc = (_nearest_centroid(high_tr, y_tr, high_te) == y_te).float().mean().item()
    assert low_acc > 0.35 and high_acc > 0.6, (low_acc, high_acc)  # chance is 0.1


def test_conflict_split_is_deterministic_balanced_and_carries_both_cues():
    a = SyntheticShapes("conflict", num_samples=181, seed=2)
    b = build_dataset("synthetic", "conflict", num_samples=181, seed=2)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.texture_targets, b.texture_targets)
    assert a.targets == a.shape_targets.tolist()
    assert not np.array_equal(a.data, SyntheticShapes("conflict", num_samples=181, seed=3).data)
    assert (a.shape_targets != a.texture_targets).all()
    pairs = np.bincount(a.shape_targets * 10 + a.texture_targets, minlength=100)
    off_diagonal = pairs[[s * 10 + t for s in range(10) for t in range(10) if s != t]]
    assert off_diagonal.min() == 2 and off_diagonal.max() == 3 and off_diagonal.sum() == 181
    for labels in (a.shape_targets, a.texture_targets):
        counts = np.bincount(labels, minlength=10)
        assert counts.max() - counts.min() <= 2
    # each cue of a conflict image names its own class: classifiers fitted on each cue of ordinary
    # training images follow shape_targets and texture_targets respectively
    train = SyntheticShapes("train", num_samples=1000)
    (low_tr, high_tr), (low_c, high_c) = _cues(train), _cues(a)
    y_tr = torch.as_tensor(train.targets)
    shape_hits = (_nearest_centroid(low_tr, y_tr, low_c).numpy() == a.shape_targets).mean()
    texture_hits = (_nearest_centroid(high_tr, y_tr, high_c).numpy() == a.texture_targets).mean()
    assert shape_hits > 0.3 and texture_hits > 0.6, (shape_hits, texture_hits)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes("val")
    with pytest.raises(ValueError, match="split"):
        build_dataset("cifar10:/nonexistent", "conflict")
    with pytest.raises(ValueError, match="num_samples"):
        SyntheticShapes("train", num_samples=0)


def test_other_image_sizes_keep_both_cues_and_the_default_is_unchanged():
    """size=24: (24, 24) images whose class lives in the low-pass shape AND the high-pass texture (the same
    nearest-centroid check on an 8×8 low-pass image, pooled by 3); size=32 is the default's bytes."""
    assert np.array_equal(SyntheticShapes("train", num_samples=20, size=32).data,
                          SyntheticShapes("train", num_samples=20).data)
    train, test = SyntheticShapes("train", num_samples=1000, size=24), SyntheticShapes("test", num_samples=300, size=24)
    assert train.data.shape == (1000, 24, 24, 3) and train[0][0].shape == (3, 24, 24)
    assert build_dataset("synthetic:24", "test", num_samples=300)[0][0].shape == (3, 24, 24)

    def cues(ds):
        grey = ds.tensors()[0].mean(1, keepdim=True)
        low = F.avg_pool2d(grey, 3)  # 8×8: frequencies below π/3
        high = grey - F.interpolate(low, scale_factor=3, mode="nearest")
        return (low - low.mean((2, 3), keepdim=True)).abs().flatten(1), torch.fft.fft2(high).abs().flatten(1)

    (low_tr, high_tr), (low_te, high_te) = cues(train), cues(test)
    y_tr, y_te = torch.as_tensor(train.targets), torch.as_tensor(test.targets)
    low_acc = (_nearest_centroid(low_tr, y_tr, low_te) == y_te).float().mean().item()
    high_acc = (_nearest_centroid(high_tr, y_tr, high_te) == y_te).float().mean().item()
    assert low_acc > 0.35 and high_acc > 0.6, (low_acc, high_acc)  # chance is 0.1
    conflict = SyntheticShapes("conflict", num_samples=90, size=24)
    assert (conflict.shape_targets != conflict.texture_targets).all()
    assert build_transform("synthetic:24", train=True)(
        __import__("PIL.Image").Image.fromarray(train.data[0])).shape == (3, 24, 24)
    for bad in (15, 0, 24.0, True):
        with pytest.raises(ValueError, match="size"):
            SyntheticShapes("train", num_samples=4, size=bad)

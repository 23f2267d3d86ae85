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


def _nearest_centroid_accuracy(train_x, train_y, test_x, test_y):
    centroids = torch.stack([train_x[train_y == k].mean(0) for k in range(10)])
    return (torch.cdist(test_x, centroids).argmin(1) == test_y).float().mean().item()


def _split_frequencies(ds):
    x, y = ds.tensors()
    grey = x.mean(1, keepdim=True)
    low = F.avg_pool2d(grey, 4)  # 8×8: frequencies below π/4
    high = grey - F.interpolate(low, scale_factor=4, mode="nearest")
    return (low - low.mean((2, 3), keepdim=True)).abs().flatten(1), high.abs().flatten(1), y


def test_class_lives_in_low_frequencies():
    low_tr, high_tr, y_tr = _split_frequencies(SyntheticShapes("train", num_samples=1000))
    low_te, high_te, y_te = _split_frequencies(SyntheticShapes("test", num_samples=300))
    low_acc = _nearest_centroid_accuracy(low_tr, y_tr, low_te, y_te)
    high_acc = _nearest_centroid_accuracy(high_tr, y_tr, high_te, y_te)
    assert low_acc > 0.35  # chance is 0.1
    assert high_acc < low_acc - 0.15


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes("val")
    with pytest.raises(ValueError, match="num_samples"):
        SyntheticShapes("train", num_samples=0)

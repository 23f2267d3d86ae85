"""Data specs: parsing, loaders, errors for missing paths, CIFAR-C and ImageFolder from disk."""
import numpy as np
import pytest
import torch
from PIL import Image

from fastvit_analysis.data import CIFAR10_MEAN, build_dataset, build_loader, normalization, parse_spec

pytestmark = pytest.mark.usefixtures("one_thread")



def test_parse_spec():
    assert parse_spec("synthetic").kind == "synthetic"
    spec = parse_spec("cifar100:/data/c100")
    assert spec.kind == "cifar100" and str(spec.path) == "/data/c100" and spec.num_classes == 100
    assert normalization("cifar10:/x")[0] == CIFAR10_MEAN
    assert parse_spec("synthetic").image_size == 32 and parse_spec("synthetic").size is None
    assert parse_spec("synthetic:24").image_size == 24 and parse_spec("synthetic:24").path is None
    for bad in ["", "mnist:/x", "cifar10", "synthetic:/x", "synthetic:8", "synthetic:24.5"]:
        with pytest.raises(ValueError, match="spec"):
            parse_spec(bad)


@pytest.mark.parametrize("spec", ["cifar10:/nonexistent/c10", "cifar100:/nonexistent/c100",
                                  "imagefolder:/nonexistent/imgs"])
def test_missing_path_is_clear(spec):
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        build_dataset(spec, "test")


def test_cifar_folder_without_batches(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        build_dataset(f"cifar10:{tmp_path}", "train")


def test_loader_batches_and_shuffling():
    loader = build_loader("synthetic", "test", batch_size=8, num_samples=20)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [8, 8, 4]
    first = torch.cat([b[1] for b in batches])
    again = torch.cat([b[1] for b in build_loader("synthetic", "test", batch_size=8, num_samples=20)])
    assert torch.equal(first, again)
    train = build_loader("synthetic", "train", batch_size=20, num_samples=20, train=True, seed=1)
    x1, y1 = next(iter(train))
    x2, y2 = next(iter(build_loader("synthetic", "train", batch_size=20, num_samples=20, train=True, seed=1)))
    assert torch.equal(y1, y2)  # seeded shuffle (augmentations draw from the global RNGs)
    unshuffled = build_loader("synthetic", "train", batch_size=20, num_samples=20)
    assert not torch.equal(y1, torch.cat([b[1] for b in unshuffled]))
    with pytest.raises(ValueError, match="batch_size"):
        build_loader("synthetic", "test", batch_size=0)
    with pytest.raises(ValueError, match="split"):
        build_dataset("synthetic", "validation")
    with pytest.raises(ValueError, match="randaugment"):
        build_loader("synthetic", "train", batch_size=4, train=True, randaugment="nonsense-config")


def test_cifar_c_from_disk(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5 * 4, 32, 32, 3), dtype=np.uint8)
    labels = np.tile(np.arange(4), 5)
    np.save(tmp_path / "fog.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    ds = build_dataset(f"cifar10c:{tmp_path}", "test", corruption="fog", severity=3)
    assert len(ds) == 4
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y == 1
    mean, std = normalization("cifar10c:/x")
    expected = (torch.from_numpy(images[9]).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(x, expected)
    with pytest.raises(ValueError, match="available: fog"):
        build_dataset(f"cifar10c:{tmp_path}", "test", corruption="snow", severity=1)
    with pytest.raises(ValueError, match="severity"):
        build_dataset(f"cifar10c:{tmp_path}", "test", corruption="fog", severity=6)
    with pytest.raises(ValueError, match="corruption="):
        build_dataset(f"cifar10c:{tmp_path}", "test")
    with pytest.raises(ValueError, match="only a 'test' split"):
        build_dataset(f"cifar10c:{tmp_path}", "train", corruption="fog", severity=1)


def test_image_folder(tmp_path):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 50, 3), 60 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    ds = build_dataset(f"imagefolder:{tmp_path}", "test")
    x, y = ds[3]
    assert x.shape == (3, 224, 224) and y == 1
    sub = build_dataset(f"imagefolder:{tmp_path}", "train", num_samples=3, seed=0)
    assert len(sub) == 3

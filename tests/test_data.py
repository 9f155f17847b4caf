"""Data: the digits splits and an ImageFolder tree (made here, ImageNet val layout)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from intvit.models.data import DIGITS_SPLIT, FolderImages, digits, image_folder


def test_digits_splits_are_disjoint_and_deterministic():
    a, b = digits("train"), digits("train")
    np.testing.assert_array_equal(a.images, b.images)
    sizes = {name: len(digits(name)) for name in DIGITS_SPLIT}
    assert sizes == DIGITS_SPLIT and sum(sizes.values()) == 1797
    assert digits("test").images.shape[1:] == (1, 32, 32)
    with pytest.raises(ValueError, match="split='val' is not supported"):
        digits("val")


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

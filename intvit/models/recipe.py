"""A training recipe: the optimizer's settings, epochs and augmentation of one training run
(the zoo's checkpoints are cached by it, see :mod:`intvit.models.train`)."""

from __future__ import annotations

from dataclasses import dataclass

from intvit.models.augment import check_shift


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    #: random translation of each training image by up to this many pixels
    #: (:func:`~intvit.models.augment.random_shift`); 0 is none
    shift: int = 0

    def __post_init__(self) -> None:
        check_training_fields(self, ("epochs", "batch_size"))
        check_shift(self.shift)


def check_training_fields(config, counts: tuple[str, ...]) -> None:
    """ValueError naming the first of ``counts`` that is not an integer >= 1, or an ``lr``
    that is not > 0 (a training config dataclass's validation)."""
    for name in counts:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1")
    if not config.lr > 0:
        raise ValueError(f"lr={config.lr} must be > 0")

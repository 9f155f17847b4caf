"""Training-time augmentation of image batches (float32 ``[N, C, H, W]``, normalized).

Only random translation. The digits are 8x8 scans upsampled to 32x32, so a shift of 4 pixels
is one scanned pixel. Without it the digits task is data-limited: a standalone ViT's top-1
does not rise with its size, and a search has nothing to rank. Measured on this project's
digits splits (one-off runs, 2 seeds, test top-1 of 500 images):
- digits_vit's shape, 60 epochs on the 1200 train images: 96.8% without a shift (the zoo
  checkpoint), 98.8 / 99.0% with ``shift=2``, 97.8 / 97.4% with ``shift=4``;
- the digits supernet, 1000 train images: ``shift=2`` and 200 epochs, largest subnet 98.6%,
  smallest 97.0% (inherited weights); ``shift=4`` underfits it (100 epochs: 88% top-1 on its
  own training images, 85.8% test).
"""

from __future__ import annotations

import numpy as np


def check_shift(value: object) -> None:
    """ValueError unless ``value`` is an integer >= 0 (a config's ``shift`` field)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"shift={value!r} must be an integer >= 0")


def random_shift(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Each image translated by its own ``(dy, dx)``, uniform in ``[-max_shift, max_shift]``,
    the uncovered border filled with that image's per-channel minimum (the background of a
    normalized scan). ``max_shift == 0`` returns ``images`` itself and draws nothing from
    ``rng``."""
    if max_shift == 0:
        return images
    n, c, h, w = images.shape
    m = max_shift
    fill = images.reshape(n, c, -1).min(-1)[:, :, None, None]
    padded = np.broadcast_to(fill, (n, c, h + 2 * m, w + 2 * m)).copy()
    padded[:, :, m : m + h, m : m + w] = images
    dy = rng.integers(0, 2 * m + 1, n)
    dx = rng.integers(0, 2 * m + 1, n)
    rows = dy[:, None] + np.arange(h)[None, :]  # [N, H]
    cols = dx[:, None] + np.arange(w)[None, :]  # [N, W]
    return padded[
        np.arange(n)[:, None, None, None],
        np.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]

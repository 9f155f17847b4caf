"""Activation range observers (per-tensor, symmetric), looked up by name.

Each observer sees float activations batch by batch and returns the clipping value ``amax``;
the scale is ``amax / qmax``. ``minmax`` keeps the largest magnitude; ``percentile`` the given
percentile of magnitudes; ``mse`` the clip that minimizes the quantization MSE.
"""

from __future__ import annotations

import numpy as np

_MAX_SAMPLES = 1 << 20


class Observer:
    name = "base"

    def __init__(self) -> None:
        self.amax_seen = 0.0
        self._samples: list[np.ndarray] = []
        self._count = 0
        self._rng = np.random.default_rng(0)

    def update(self, x: np.ndarray) -> None:
        mag = np.abs(np.asarray(x, dtype=np.float32)).ravel()
        if mag.size == 0:
            return
        self.amax_seen = max(self.amax_seen, float(mag.max()))
        budget = _MAX_SAMPLES // 8
        if mag.size > budget:
            mag = self._rng.choice(mag, budget, replace=False)
        self._samples.append(mag)
        self._count += mag.size

    def samples(self) -> np.ndarray:
        if not self._samples:
            raise ValueError(f"observer {self.name!r} saw no data (empty calibration set)")
        return np.concatenate(self._samples)

    def amax(self, qmax: int) -> float:
        raise NotImplementedError


class MinMaxObserver(Observer):
    name = "minmax"

    def amax(self, qmax: int) -> float:
        self.samples()  # raises on an empty calibration set
        return self.amax_seen


class PercentileObserver(Observer):
    name = "percentile"
    percentile = 99.99

    def amax(self, qmax: int) -> float:
        return float(np.percentile(self.samples(), self.percentile))


class MSEObserver(Observer):
    name = "mse"

    def amax(self, qmax: int) -> float:
        mag = self.samples().astype(np.float64)
        best, best_err = self.amax_seen, np.inf
        for frac in np.linspace(0.3, 1.0, 36):
            clip = self.amax_seen * frac
            if clip <= 0:
                continue
            scale = clip / qmax
            err = np.mean((np.minimum(np.round(mag / scale), qmax) * scale - mag) ** 2)
            if err < best_err:
                best, best_err = clip, err
        return float(best)


OBSERVERS = {cls.name: cls for cls in (MinMaxObserver, PercentileObserver, MSEObserver)}


def make_observer(name: str) -> Observer:
    if name not in OBSERVERS:
        raise ValueError(f"unknown observer {name!r}; known: {', '.join(OBSERVERS)}")
    return OBSERVERS[name]()

"""The latency predictor the search uses between measurements: XGBoost regression of log
latency on arch features (:func:`intvit.nas.cost.features`), fitted on measured subnets."""

from __future__ import annotations

import numpy as np

from intvit.nas.cost import features
from intvit.quant.arch import VitArch


class LatencyPredictor:
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.model = None

    def fit(self, archs: list[VitArch], ms: list[float]) -> LatencyPredictor:
        import xgboost as xgb

        if len(archs) < 4:
            raise ValueError(f"the latency predictor needs >= 4 measured subnets, got {len(archs)}")
        x = np.stack([features(a) for a in archs])
        y = np.log(np.asarray(ms, dtype=np.float64))
        self.model = xgb.XGBRegressor(
            n_estimators=300,
            max_depth=3,
            learning_rate=0.05,
            subsample=1.0,
            random_state=self.seed,
            n_jobs=1,
        )
        self.model.fit(x, y)
        return self

    def predict(self, archs: list[VitArch]) -> np.ndarray:
        if self.model is None:
            raise ValueError("the latency predictor is not fitted")
        x = np.stack([features(a) for a in archs])
        return np.exp(self.model.predict(x))


def mape(predicted, measured) -> float:
    """Mean absolute percentage error (a fraction: 0.1 is 10%)."""
    p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    return float(np.mean(np.abs(p - m) / m))

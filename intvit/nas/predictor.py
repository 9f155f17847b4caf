"""The latency predictor the search uses between measurements, fitted on measured subnets in
two stages:

1. a cost model: latency as a non-negative sum of the work terms of
   :func:`intvit.nas.cost.cost_terms` (per call, per kernel, per GEMM and attention MAC, per
   row-kernel element), fitted by non-negative least squares on relative error;
2. XGBoost regression of the log ratio of measured to cost-model latency on the arch features
   (:func:`intvit.nas.cost.features` and the cost terms): what the sum misses (tiles that a
   width fills badly, cache effects), shrunk hard, since two dozen measurements are all it has.

XGBoost alone on the features, as before, extrapolated poorly from 24 subnets (cross-validated
MAPE 13% against 7% for the cost model, on 40 digits subnets measured on this host); the
cost model carries the trend and the trees only the residual."""

from __future__ import annotations

import numpy as np

from intvit.nas.cost import cost_terms, features
from intvit.quant.arch import VitArch


def _inputs(archs: list[VitArch]) -> tuple[np.ndarray, np.ndarray]:
    terms = np.stack([cost_terms(a) for a in archs])
    return terms, np.concatenate([np.stack([features(a) for a in archs]), terms], axis=1)


class LatencyPredictor:
    def __init__(self, seed: int = 0, residual: bool = True) -> None:
        self.seed = seed
        self.residual = residual
        self.coef: np.ndarray | None = None
        self.model = None

    def fit(self, archs: list[VitArch], ms: list[float]) -> LatencyPredictor:
        from scipy.optimize import nnls

        if len(archs) < 4:
            raise ValueError(f"the latency predictor needs >= 4 measured subnets, got {len(archs)}")
        y = np.asarray(ms, dtype=np.float64)
        if not np.all(y > 0):
            raise ValueError("measured latencies must be > 0 ms")
        terms, x = _inputs(archs)
        weight = 1.0 / y  # relative error: small subnets count as much as large ones
        self.coef, _ = nnls(terms * weight[:, None], y * weight)
        self.model = None
        base = terms @ self.coef
        if self.residual and np.all(base > 0):
            import xgboost as xgb

            self.model = xgb.XGBRegressor(
                n_estimators=100,
                max_depth=2,
                learning_rate=0.05,
                reg_lambda=5.0,
                min_child_weight=3,
                random_state=self.seed,
                n_jobs=1,
            )
            self.model.fit(x, np.log(y / base))
        return self

    def predict(self, archs: list[VitArch]) -> np.ndarray:
        if self.coef is None:
            raise ValueError("the latency predictor is not fitted")
        terms, x = _inputs(archs)
        base = terms @ self.coef
        if self.model is None:
            return base
        return base * np.exp(self.model.predict(x))


def mape(predicted, measured) -> float:
    """Mean absolute percentage error (a fraction: 0.1 is 10%)."""
    p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    return float(np.mean(np.abs(p - m) / m))

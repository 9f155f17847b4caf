"""Choosing the edge softmax's left-shift bits ``M*`` offline (seed 001, two methods).

In :class:`~intvit.topi.softmax_params.EdgeSoftmaxParams` the exps take ``B = 31 - M*`` bits:
a large ``M*`` leaves headroom for the reciprocal, a small one keeps exp resolution.

- ``output``: the exp ulp ``2**-B`` (relative to the row max's exp, 1.0) must lie below the
  smallest gap between distinct float softmax outputs on the calibration rows; the largest
  ``M*`` that satisfies it is taken (most reciprocal headroom).
- ``mse``: the ``M*`` whose integer softmax has the least mean squared error against the float
  softmax on the calibration rows.
"""

from __future__ import annotations

import math

import numpy as np

from intvit.topi.contract import check_choice
from intvit.topi.softmax_params import EdgeSoftmaxParams
from intvit.topi.softmax_ref import edge_softmax_ref

M_STAR_METHODS = ("output", "mse")


def float_softmax(q: np.ndarray, scale: float) -> np.ndarray:
    x = q.astype(np.float64) * scale
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _check_samples(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q)
    if q.size == 0:
        raise ValueError("calibration samples are empty; M* needs at least one row")
    if not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f"calibration samples must be integers, got dtype {q.dtype}")
    return q


def select_m_star(q: np.ndarray, scale: float, out_bits: int = 8, method: str = "mse") -> int:
    """``M*`` for integer softmax inputs ``q`` (``[..., row_len]``) at ``scale``."""
    check_choice("method", method, M_STAR_METHODS)
    q = _check_samples(q)
    row_len = int(q.shape[-1])
    lo, hi = EdgeSoftmaxParams.m_star_range(row_len, out_bits)
    ref = float_softmax(q, scale)
    if method == "output":
        values = np.unique(ref.ravel())
        gaps = np.diff(values)
        gaps = gaps[gaps > 0]
        if gaps.size == 0:
            return hi
        need_bits = math.ceil(-math.log2(float(gaps.min())))
        return int(min(hi, max(lo, 31 - need_bits)))
    best, best_err = lo, math.inf
    for m in range(lo, hi + 1):
        params = EdgeSoftmaxParams.from_scale(scale, row_len, out_bits, m_star=m)
        err = float(np.mean((edge_softmax_ref(q, params) * params.out_scale - ref) ** 2))
        if err < best_err:
            best, best_err = m, err
    return best

"""NumPy reference of the low-rank linear (:mod:`intvit.topi.low_rank_packed`): the first
factor's int32 accumulator requantized to ``h`` (int8), then the second GEMM. Integer ops
only; the one definition the reference forward and the kernel tests use."""

from __future__ import annotations

import numpy as np

from intvit.topi.matmul_ref import dense_ref
from intvit.topi.requantize_params import RequantParams
from intvit.topi.requantize_ref import requantize_ref


def low_rank_ref(
    x: np.ndarray,
    down: np.ndarray,
    bias1: np.ndarray | None,
    rq1: RequantParams,
    up: np.ndarray,
    bias2: np.ndarray | None,
) -> np.ndarray:
    """int32 ``h up^T + bias2`` with ``h = rq1(x down^T + bias1)``: ``x [..., K]`` int8/uint8,
    ``down [r, K]`` and ``up [N, r]`` int8, biases int32, ``h`` in ``rq1.out_dtype``."""
    return dense_ref(requantize_ref(dense_ref(x, down, bias1), rq1), up, bias2)

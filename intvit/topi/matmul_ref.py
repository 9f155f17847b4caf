"""NumPy references of the integer GEMMs (spec of :mod:`intvit.topi.matmul`)."""

from __future__ import annotations

import numpy as np


def dense_ref(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``x[..., K]`` (int8 or uint8) times ``w[N, K]`` (int8) transposed, plus ``bias[N]`` (int32).

    Exact int32 result: ``|x·w| <= 255 * 128 * K < 2**31`` for ``K < 65793``.
    """
    acc = np.matmul(x.astype(np.int64), w.astype(np.int64).T)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return acc.astype(np.int32)


def batch_matmul_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a[B, M, K]`` times ``b[B, N, K]`` transposed -> int32 ``[B, M, N]`` (QK^T, PV)."""
    bt = np.swapaxes(b.astype(np.int64), -1, -2)
    return np.matmul(a.astype(np.int64), bt).astype(np.int32)

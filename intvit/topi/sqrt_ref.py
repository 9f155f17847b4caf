"""NumPy references of integer square roots (spec of :mod:`intvit.topi.sqrt`).

Variants:
- ``newton``: I-BERT / MCUFormer Algorithm 1 run until ``x_{i+1} >= x_i``: exactly
  ``floor(sqrt(n))`` (the loop runs a fixed ``converge_iters(bits)`` times, which is enough).
- ``newton_fixed``: the same start, exactly ``t`` iterations (MCUFormer's fixed ``t``); may end
  one above the floor when ``t`` is too small.
- ``ivit``: I-ViT's I-LayerNorm loop: start at ``2**16``, ten iterations, no convergence test.
"""

from __future__ import annotations

import numpy as np

from intvit.topi.intops_ref import as_acc, bit_length, const


def converge_iters(acc_bits: int) -> int:
    """Iterations after which the Newton sequence from ``2**ceil(P/2)`` has converged."""
    return 7 if acc_bits == 32 else 8


def newton_start(n: np.ndarray, acc_bits: int) -> np.ndarray:
    """``x0 = 2**ceil(ceil(log2 n) / 2)`` (1 for n <= 1)."""
    p = bit_length(np.maximum(n.astype(np.int64) - 1, 0))  # ceil(log2 n) for n >= 1
    return np.left_shift(const(1, acc_bits), const((p + 1) // 2, acc_bits))


def isqrt_newton_ref(n: np.ndarray, acc_bits: int = 64, iters: int | None = None) -> np.ndarray:
    """``floor(sqrt(n))`` for ``n >= 0`` (``iters=None``), or MCUFormer's ``t = iters`` steps."""
    n = as_acc(n, acc_bits)
    x = newton_start(n, acc_bits)
    safe = np.where(n > 0, n, const(1, acc_bits))
    steps = converge_iters(acc_bits) if iters is None else iters
    for _ in range(steps):
        nxt = (x + safe // x) >> const(1, acc_bits)
        x = np.minimum(x, nxt) if iters is None else nxt
        x = np.maximum(x, const(1, acc_bits))
    return np.where(n > 0, x, const(0, acc_bits))


def isqrt_ivit_ref(n: np.ndarray, acc_bits: int = 64) -> np.ndarray:
    """I-ViT: ``k = 2**16``; ten times ``k = (k + n // k) // 2``. Approximate for ``n >= 2**32``."""
    n = as_acc(n, acc_bits)
    k = np.full(n.shape, 1 << 16, dtype=n.dtype)
    for _ in range(10):
        k = (k + n // np.maximum(k, const(1, acc_bits))) >> const(1, acc_bits)  # k >= 64 for n >= 0
    return k

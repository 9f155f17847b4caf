"""NumPy integer exponentials shared by the softmax and GELU references.

``shift_exp``: I-ViT's ShiftExp (authors' PyTorch ``int_exp_shift``).
``poly_exp_terms``: I-BERT's range reduction and second-order polynomial (``int_polynomial``).
"""

from __future__ import annotations

import numpy as np

from intvit.topi.intops_ref import consts


def shift_exp(x: np.ndarray, x0: int, n: int, acc_bits: int, max_shift: int | None = None):
    """``exp(x * S)`` at scale ``S / 2**n`` from ``x`` at scale ``S`` (``x0 = floor(-1/S)``).

    ``x * log2(e)`` is ``x + (x >> 1) - (x >> 4)``; ``x`` is clamped at ``n * x0``;
    ``2**r`` is ``r/2 - x0`` with the half bit kept until the final shift:
    ``((r - 2*x0) << (n - q)) >> 1``. For positive ``x`` (GELU's ``exp(-max)``) the left shift
    is capped at ``max_shift`` and the result saturates at ``2**31 - 1``: the caller clamps
    there anyway, so the capped value is exact where it matters.
    """
    c = consts(acc_bits)
    x = x + (x >> c(1)) - (x >> c(4))
    x = np.maximum(x, c(n * x0))
    q = x // c(x0)
    r = x - c(x0) * q
    shift = c(n) - q
    if max_shift is not None:
        shift = np.minimum(shift, c(max_shift))
    out = np.left_shift(r - c(2 * x0), shift) >> c(1)
    if max_shift is not None and acc_bits == 64:
        out = np.minimum(out, c(2**31 - 1))
    return np.maximum(out, c(0))


def poly_exp_terms(x: np.ndarray, x0: int, b_int: int, c_int: int, n: int, acc_bits: int):
    """I-BERT: clamp ``x >= n*x0``, ``x = q*x0 + r`` with ``r`` in ``(x0, 0]``, and the
    polynomial ``z = r*(r + b_int) + c_int`` ~ ``exp(r*S) / (0.358 * S**2)``. Returns ``(z, q)``.
    """
    c = consts(acc_bits)
    x = np.maximum(x, c(n * x0))
    q = x // c(x0)
    r = x - c(x0) * q
    return r * (r + c(b_int)) + c(c_int), q

"""NumPy reference of dyadic requantization (the spec of :mod:`intvit.topi.requantize`)."""

from __future__ import annotations

import numpy as np

from intvit.topi.intops_ref import as_acc, clamp, const, shift_right_round
from intvit.topi.requantize_params import RequantParams


def requantize_ref(q: np.ndarray, params: RequantParams) -> np.ndarray:
    """Integer ``q`` (any int dtype, ``|q| <= 2**params.in_bits``) -> ``params.out_dtype``.

    Per-channel constants broadcast along the last axis. Rounding is half up (toward +inf);
    saturation clamps to the output dtype's range.
    """
    bits = params.product_bits
    m, s, bias = params.arrays()
    x = as_acc(q, bits)
    x = shift_right_round(x, params.p, bits)
    y = shift_right_round(x * const(m, bits), s, bits) + const(bias, bits)
    lo, hi = params.out_range
    return clamp(y, lo, hi).astype(params.out_dtype)

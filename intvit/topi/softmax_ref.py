"""NumPy references of the integer softmax variants (the spec of :mod:`intvit.topi.softmax`).

Input ``q``: integer array at ``params.scale`` (``|q| <= 2**30``), softmax over the last axis.
Output: ``params.out_dtype`` probabilities at ``params.out_scale``. ``acc_bits`` (default: the
params') is the intermediate width; at 32 the arithmetic wraps as an int32 device's would.
"""

from __future__ import annotations

import numpy as np

from intvit.topi.intexp_ref import poly_exp_terms, shift_exp
from intvit.topi.intops_ref import (
    as_acc,
    clamp,
    consts,
    shift_right_half_even_var,
    shift_right_round,
)
from intvit.topi.softmax_params import (
    EdgeSoftmaxParams,
    IBertSoftmaxParams,
    ShiftmaxParams,
    SoftmaxParams,
)


def shiftmax_ref(q: np.ndarray, p: ShiftmaxParams, acc_bits: int | None = None) -> np.ndarray:
    bits = acc_bits or p.acc_bits
    c = consts(bits)
    x = as_acc(q, bits)
    x = x - x.max(axis=-1, keepdims=True)
    e = shift_exp(x, p.x0, p.n, bits)
    total = np.minimum(e.sum(axis=-1, keepdims=True, dtype=e.dtype), c(2**31 - 1))
    factor = c(2**31 - 1) // total
    out = (e * factor) >> c(31 - p.out_bits + 1)
    return clamp(out, 0, p.out_max).astype(p.out_dtype)


def ibert_softmax_ref(q: np.ndarray, p: IBertSoftmaxParams, acc_bits: int | None = None):
    bits = acc_bits or p.acc_bits
    c = consts(bits)
    x = as_acc(q, bits)
    x = x - x.max(axis=-1, keepdims=True)
    z, k = poly_exp_terms(x, p.x0, p.b_int, p.c_int, p.n, bits)
    if bits == 64:
        # The authors' QuantAct(16): round((z << (n-k)) * m / 2**e), ties to even, as
        # round(z * m / 2**(e - n + k)) (z <= c_int < 2**31, m <= 2**31: the product fits).
        product = np.maximum(z, c(0)) * c(p.frexp_m)
        e16 = np.minimum(shift_right_half_even_var(product, c(p.frexp_e - p.n) + k), c(2**15 - 1))
    else:  # the authors' order, as an int32 port computes it (what the audit measures)
        e = np.maximum(np.left_shift(z, c(p.n) - k), c(0))
        e16 = shift_right_round(e * c(p.m16), p.s16, bits)
    total = e16.sum(axis=-1, keepdims=True, dtype=e16.dtype)
    factor = c(2**32) // np.maximum(total, c(1))
    out = (e16 * factor) >> c(32 - p.out_bits)
    return clamp(out, 0, p.out_max).astype(p.out_dtype)


def edge_softmax_ref(q: np.ndarray, p: EdgeSoftmaxParams, acc_bits: int | None = None):
    bits = acc_bits or p.acc_bits
    c = consts(bits)
    x = as_acc(q, bits)
    x = x - x.max(axis=-1, keepdims=True)
    if p.p >= 0:
        x = x >> c(p.p)
    else:
        x = np.maximum(x, c(p.pre_clamp)) << c(-p.p)
    z, k = poly_exp_terms(x, p.x0, p.b_int, p.c_int, p.exp_bits, bits)
    e = (z >> c(p.e_shift)) if p.e_shift >= 0 else (z << c(-p.e_shift))
    e = e >> k
    total = e.sum(axis=-1, keepdims=True, dtype=e.dtype)
    factor = c(2**31 - 1) // total
    out = (((e * factor) >> c(30 - p.out_bits)) + c(1)) >> c(1)
    return clamp(out, 0, p.out_max).astype(p.out_dtype)


def softmax_ref(q: np.ndarray, params: SoftmaxParams, acc_bits: int | None = None) -> np.ndarray:
    """Dispatch on the params' variant."""
    fn = {"shiftmax": shiftmax_ref, "ibert": ibert_softmax_ref, "edge": edge_softmax_ref}
    return fn[params.variant](q, params, acc_bits)

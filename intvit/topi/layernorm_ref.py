"""NumPy references of the integer LayerNorm variants (spec of :mod:`intvit.topi.layernorm`)."""

from __future__ import annotations

import numpy as np

from intvit.topi.intops_ref import (
    as_acc,
    bit_length,
    consts,
    div_round_half_even,
    shift_right_round,
)
from intvit.topi.layernorm_params import (
    EDGE_LN_HEADROOM,
    EDGE_LN_M,
    EdgeLayerNormParams,
    ILayerNormParams,
    LayerNormParams,
)
from intvit.topi.requantize_ref import requantize_ref
from intvit.topi.sqrt_ref import isqrt_ivit_ref, isqrt_newton_ref


def ilayernorm_ref(q: np.ndarray, p: ILayerNormParams, acc_bits: int | None = None):
    bits = acc_bits or p.acc_bits
    c = consts(bits)
    x = as_acc(q, bits)
    mean = div_round_half_even(x.sum(axis=-1, keepdims=True, dtype=x.dtype), p.channels)
    y = x - mean
    var = (y * y).sum(axis=-1, keepdims=True, dtype=x.dtype)
    std = isqrt_ivit_ref(var, bits)
    factor = c(2**31 - 1) // np.maximum(std, c(1))
    fine = np.broadcast_to(np.asarray(p.fine_bias or 0, dtype=np.int64), (p.channels,))
    return requantize_ref(((y * factor) >> c(1)) + c(fine), p.out)


def edge_layernorm_ref(q: np.ndarray, p: EdgeLayerNormParams, acc_bits: int | None = None):
    bits = acc_bits or p.acc_bits
    c = consts(bits)
    x = shift_right_round(as_acc(q, bits), p.p, bits)
    mean = div_round_half_even(x.sum(axis=-1, keepdims=True, dtype=x.dtype), p.channels)
    y = x - mean
    y0 = shift_right_round(y, p.v, bits)
    ss0 = (y0 * y0).sum(axis=-1, keepdims=True, dtype=x.dtype)
    headroom = (c(EDGE_LN_HEADROOM) - bit_length(ss0).astype(x.dtype)) >> c(1)
    v_row = np.maximum(c(p.v) - headroom, c(0))
    yr = shift_right_round(y, v_row, bits)
    ss = (yr * yr).sum(axis=-1, keepdims=True, dtype=x.dtype)
    den = isqrt_newton_ref(ss + c(1), bits)
    bound = den * c(2)
    yr = np.minimum(np.maximum(yr, -bound), bound)
    factor = c(1 << p.k) // np.maximum(den, c(1))
    fine = np.broadcast_to(np.asarray(p.fine_bias or 0, dtype=np.int64), (p.channels,))
    out = shift_right_round(yr * factor, p.k - EDGE_LN_M, bits) + c(fine)
    return requantize_ref(out, p.out)


def layernorm_ref(q: np.ndarray, params: LayerNormParams, acc_bits: int | None = None):
    """The reference of the params' variant (by their class)."""
    return _REFERENCES[type(params)](q, params, acc_bits)


_REFERENCES = {ILayerNormParams: ilayernorm_ref, EdgeLayerNormParams: edge_layernorm_ref}

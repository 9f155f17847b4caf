"""NumPy references of the integer GELU variants (the spec of :mod:`intvit.topi.gelu`).

Input ``q``: integer array at ``params.scale`` with ``|q| <= 2**params.in_bits``. Output:
``params.out.out_dtype`` at the ``out_scale`` the params were made with.
"""

from __future__ import annotations

import numpy as np

from intvit.topi.gelu_params import (
    LUT_OFFSET,
    LUT_SIZE,
    EdgeGeluParams,
    GeluParams,
    IBertGeluParams,
    IErfConsts,
    LutGeluParams,
    ReluParams,
    ShiftGeluParams,
    Sigmoid1702Params,
)
from intvit.topi.intexp_ref import shift_exp
from intvit.topi.intops_ref import as_acc, clamp, const, consts
from intvit.topi.requantize_ref import requantize_ref


def ierf_gelu_raw(x: np.ndarray, erf: IErfConsts, acc_bits: int) -> np.ndarray:
    """``x * (sgn(x) * ((min(|x|, -b) + b)**2 + c) >> n + shift)`` (I-BERT ``IntGELU``)."""
    c = consts(acc_bits)
    sign = np.sign(x)
    mag = np.minimum(np.abs(x), c(-erf.b_int))
    y = (mag + c(erf.b_int)) * (mag + c(erf.b_int)) + c(erf.c_int)
    y = (sign * y) >> c(erf.n)
    return x * (y + c(erf.shift_int))


def ibert_gelu_ref(q, p: IBertGeluParams, acc_bits=None):
    bits = acc_bits or p.acc_bits
    return requantize_ref(ierf_gelu_raw(as_acc(q, bits), p.erf, bits), p.out)


def shiftgelu_ref(q, p: ShiftGeluParams, acc_bits=None):
    bits = acc_bits or p.acc_bits
    c = consts(bits)
    x = as_acc(q, bits)
    mx = x.max(axis=-1, keepdims=True)
    e = shift_exp(x - mx, p.x0, p.n, bits)
    e_max = shift_exp(-mx, p.x0, p.n, bits, max_shift=min(32, bits - 1))
    total = np.minimum(e + e_max, c(2**31 - 1))
    sig = (e * (c(2**31 - 1) // total)) >> c(31 - p.sig_bits + 1)
    return requantize_ref(x * sig, p.out)


def sigmoid1702_ref(q, p: Sigmoid1702Params, acc_bits=None):
    bits = acc_bits or p.acc_bits
    c = consts(bits)
    x = as_acc(q, bits)
    e = shift_exp(-np.abs(x), p.x0, p.n, bits)
    sig_pos = (c(p.e0) * (c(2**31 - 1) // (c(p.e0) + e))) >> c(31 - p.sig_bits)
    sig = np.where(x >= 0, sig_pos, c(2**p.sig_bits) - sig_pos)
    return requantize_ref(x * sig, p.out)


def edge_gelu_ref(q, p: EdgeGeluParams, acc_bits=None):
    bits = acc_bits or p.acc_bits
    x = as_acc(requantize_ref(q, p.pre), bits)
    x = clamp(x, -p.q_max, p.q_max)
    return requantize_ref(ierf_gelu_raw(x, p.erf, bits), p.out)


def lut_gelu_ref(q, p: LutGeluParams, acc_bits=None):
    """``table[q + 128]``; ``q`` int8 (any integer dtype holding values in [-128, 127])."""
    q = np.asarray(q)
    if q.size and (q.min() < -LUT_OFFSET or q.max() >= LUT_SIZE - LUT_OFFSET):
        raise ValueError(f"lut GELU input outside int8: [{q.min()}, {q.max()}]")
    return np.asarray(p.table, dtype=p.out_dtype)[q.astype(np.int64) + LUT_OFFSET]


def relu_ref(q, p: ReluParams, acc_bits=None):
    bits = acc_bits or p.acc_bits
    return requantize_ref(np.maximum(as_acc(q, bits), const(0, bits)), p.out)


def gelu_ref(q: np.ndarray, params: GeluParams, acc_bits: int | None = None) -> np.ndarray:
    """Dispatch on the params' variant."""
    fn = {
        "ibert": ibert_gelu_ref,
        "shiftgelu": shiftgelu_ref,
        "sigmoid1702": sigmoid1702_ref,
        "edge": edge_gelu_ref,
        "lut": lut_gelu_ref,
        "relu": relu_ref,
    }
    return fn[params.variant](q, params, acc_bits)

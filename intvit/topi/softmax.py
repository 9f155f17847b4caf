"""TE computes of the integer softmax variants; spec: :mod:`intvit.topi.softmax_ref`."""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from intvit.topi.intexp import poly_exp_terms, shift_exp
from intvit.topi.intops import (
    acc_dtype,
    clamp,
    consts,
    div_round_half_even_var,
    shift_right_round,
)
from intvit.topi.rowwise import check_rowwise_input, row_reduce
from intvit.topi.softmax_params import SoftmaxParams


def _exp_expr(x: tirx.PrimExpr, p: SoftmaxParams, dtype: str, lo: int) -> tirx.PrimExpr:
    """The exp of ``x = q - max(row)``, which lies in ``[lo, 0]``."""
    c = consts(dtype)
    if p.variant == "shiftmax":
        return shift_exp(x, p.x0, p.n)
    if p.variant == "ibert":
        z, k = poly_exp_terms(x, p.x0, p.b_int, p.c_int, p.n)
        if dtype == "int64":  # exact: see softmax_ref.ibert_softmax_ref
            num = tirx.max(z, c(0)) * c(2**15 - 1)
            return div_round_half_even_var(num, c(p.c_int) << k)
        e = tirx.max(z << (c(p.n) - k), c(0))
        return shift_right_round(e * c(p.m16), p.s16, dtype)
    if p.p >= 0:
        x, lo = x >> c(p.p), lo >> p.p
    else:
        x, lo = tirx.max(x, c(p.pre_clamp)) << c(-p.p), max(lo, p.pre_clamp) << -p.p
    z, k = poly_exp_terms(x, p.x0, p.b_int, p.c_int, p.exp_bits, x_range=(lo, 0))
    e = (z >> c(p.e_shift)) if p.e_shift >= 0 else (z << c(-p.e_shift))
    return e >> k


def _out_expr(e: tirx.PrimExpr, factor: tirx.PrimExpr, p: SoftmaxParams, dtype: str):
    c = consts(dtype)
    if p.variant == "shiftmax":
        out = (e * factor) >> c(31 - p.out_bits + 1)
    elif p.variant == "ibert":
        out = (e * factor) >> c(32 - p.out_bits)
    else:
        out = (((e * factor) >> c(30 - p.out_bits)) + c(1)) >> c(1)
    return clamp(out, 0, p.out_max).astype(p.out_dtype)


def _factor_expr(total: tirx.PrimExpr, p: SoftmaxParams, dtype: str) -> tirx.PrimExpr:
    c = consts(dtype)
    if p.variant == "shiftmax":
        return tirx.floordiv(c(2**31 - 1), tirx.min(total, c(2**31 - 1)))
    if p.variant == "ibert":
        return tirx.floordiv(c(2**32 if dtype == "int64" else 0), tirx.max(total, c(1)))
    return tirx.floordiv(c(2**31 - 1), total)


def softmax(q: te.Tensor, params: SoftmaxParams, acc_bits: int | None = None, axis: int = -1):
    """Integer softmax of ``q`` over the last axis; stages: max, exp, sum, reciprocal, scale."""
    check_rowwise_input(q, axis=axis)
    dtype = acc_dtype(acc_bits or params.acc_bits)
    mx = row_reduce(q, "max", dtype, "sm_max")
    info = np.iinfo(str(q.dtype))
    lowest = int(info.min) - int(info.max)  # q - max(row) lies in [lowest, 0]
    exp = te.compute(
        q.shape,
        lambda *i: _exp_expr(q(*i).astype(dtype) - mx(*i[:-1]), params, dtype, lowest),
        name="sm_exp",
    )
    total = row_reduce(exp, "sum", dtype, "sm_sum")
    factor = te.compute(
        total.shape, lambda *i: _factor_expr(total(*i), params, dtype), name="sm_rcp"
    )
    return te.compute(
        q.shape,
        lambda *i: _out_expr(exp(*i), factor(*i[:-1]), params, dtype),
        name=f"softmax_{params.variant}",
    )

"""TE computes of the integer softmax variants; spec: :mod:`intvit.topi.softmax_ref`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from intvit.topi.intexp import poly_exp_terms, shift_exp
from intvit.topi.intops import (
    acc_dtype,
    clamp,
    consts,
    shift_right_half_even_var,
    shift_right_round,
)
from intvit.topi.rowwise import check_rowwise_input, row_reduce
from intvit.topi.softmax_params import (
    EdgeSoftmaxParams,
    IBertSoftmaxParams,
    ShiftmaxParams,
    SoftmaxParams,
)


def _shiftmax_exp(x: tirx.PrimExpr, p: ShiftmaxParams, dtype: str, lo: int) -> tirx.PrimExpr:
    return shift_exp(x, p.x0, p.n)


def _ibert_exp(x: tirx.PrimExpr, p: IBertSoftmaxParams, dtype: str, lo: int) -> tirx.PrimExpr:
    c = consts(dtype)
    z, k = poly_exp_terms(x, p.x0, p.b_int, p.c_int, p.n)
    if dtype == "int64":  # the authors' rounding: see softmax_ref.ibert_softmax_ref
        product = tirx.max(z, c(0)) * c(p.frexp_m)
        e16 = shift_right_half_even_var(product, c(p.frexp_e - p.n) + k)
        return tirx.min(e16, c(2**15 - 1))
    e = tirx.max(z << (c(p.n) - k), c(0))
    return shift_right_round(e * c(p.m16), p.s16, dtype)


def _edge_exp(x: tirx.PrimExpr, p: EdgeSoftmaxParams, dtype: str, lo: int) -> tirx.PrimExpr:
    c = consts(dtype)
    if p.p >= 0:
        x, lo = x >> c(p.p), lo >> p.p
    else:
        x, lo = tirx.max(x, c(p.pre_clamp)) << c(-p.p), max(lo, p.pre_clamp) << -p.p
    z, k = poly_exp_terms(x, p.x0, p.b_int, p.c_int, p.exp_bits, x_range=(lo, 0))
    e = (z >> c(p.e_shift)) if p.e_shift >= 0 else (z << c(-p.e_shift))
    return e >> k


def _shiftmax_factor(total: tirx.PrimExpr, p: ShiftmaxParams, dtype: str) -> tirx.PrimExpr:
    c = consts(dtype)
    return tirx.floordiv(c(2**31 - 1), tirx.min(total, c(2**31 - 1)))


def _ibert_factor(total: tirx.PrimExpr, p: IBertSoftmaxParams, dtype: str) -> tirx.PrimExpr:
    c = consts(dtype)
    return tirx.floordiv(c(2**32 if dtype == "int64" else 0), tirx.max(total, c(1)))


def _edge_factor(total: tirx.PrimExpr, p: EdgeSoftmaxParams, dtype: str) -> tirx.PrimExpr:
    return tirx.floordiv(consts(dtype)(2**31 - 1), total)


def _shiftmax_scale(e, factor, p: ShiftmaxParams, dtype: str) -> tirx.PrimExpr:
    return (e * factor) >> consts(dtype)(31 - p.out_bits + 1)


def _ibert_scale(e, factor, p: IBertSoftmaxParams, dtype: str) -> tirx.PrimExpr:
    return (e * factor) >> consts(dtype)(32 - p.out_bits)


def _edge_scale(e, factor, p: EdgeSoftmaxParams, dtype: str) -> tirx.PrimExpr:
    c = consts(dtype)
    return (((e * factor) >> c(30 - p.out_bits)) + c(1)) >> c(1)


@dataclass(frozen=True)
class _Stages:
    """A softmax variant's three elementwise stages: the exp of ``x = q - max(row)`` (which
    lies in ``[lo, 0]``), the reciprocal factor of the row's sum, and the scaled output
    before its clamp to ``[0, out_max]``."""

    exp: Callable
    factor: Callable
    scale: Callable


#: Each variant's stages, by its constants' class (spec: :mod:`intvit.topi.softmax_ref`).
_STAGES: dict[type, _Stages] = {
    ShiftmaxParams: _Stages(_shiftmax_exp, _shiftmax_factor, _shiftmax_scale),
    IBertSoftmaxParams: _Stages(_ibert_exp, _ibert_factor, _ibert_scale),
    EdgeSoftmaxParams: _Stages(_edge_exp, _edge_factor, _edge_scale),
}


def softmax(q: te.Tensor, params: SoftmaxParams, acc_bits: int | None = None, axis: int = -1):
    """Integer softmax of ``q`` over the last axis; stages: max, exp, sum, reciprocal, scale."""
    check_rowwise_input(q, axis=axis)
    dtype = acc_dtype(acc_bits or params.acc_bits)
    stages = _STAGES[type(params)]
    mx = row_reduce(q, "max", dtype, "sm_max")
    info = np.iinfo(str(q.dtype))
    lowest = int(info.min) - int(info.max)  # q - max(row) lies in [lowest, 0]
    exp = te.compute(
        q.shape,
        lambda *i: stages.exp(q(*i).astype(dtype) - mx(*i[:-1]), params, dtype, lowest),
        name="sm_exp",
    )
    total = row_reduce(exp, "sum", dtype, "sm_sum")
    factor = te.compute(
        total.shape, lambda *i: stages.factor(total(*i), params, dtype), name="sm_rcp"
    )
    return te.compute(
        q.shape,
        lambda *i: clamp(
            stages.scale(exp(*i), factor(*i[:-1]), params, dtype), 0, params.out_max
        ).astype(params.out_dtype),
        name=f"softmax_{params.variant}",
    )

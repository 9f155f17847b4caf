"""TE computes of the integer GELU variants; spec: :mod:`intvit.topi.gelu_ref`."""

from __future__ import annotations

from tvm import te, tirx

from intvit.topi.contract import check_dtype, check_rank
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
from intvit.topi.intexp import shift_exp
from intvit.topi.intops import acc_dtype, clamp, consts, dtype_of
from intvit.topi.requantize import requantize_expr
from intvit.topi.rowwise import INT_INPUTS, row_reduce


def ierf_gelu_raw(x: tirx.PrimExpr, erf: IErfConsts) -> tirx.PrimExpr:
    dtype = dtype_of(x)
    c = consts(dtype)
    zero = c(0)
    sign = tirx.Select(x > zero, c(1), tirx.Select(x < zero, c(-1), zero))
    mag = tirx.min(tirx.abs(x), c(-erf.b_int)) + c(erf.b_int)
    y = ((sign * (mag * mag + c(erf.c_int))) >> c(erf.n)) + c(erf.shift_int)
    return x * y


def _ibert_raw(x: tirx.PrimExpr, p: IBertGeluParams) -> tirx.PrimExpr:
    return ierf_gelu_raw(x, p.erf)


def _sigmoid1702_raw(x: tirx.PrimExpr, p: Sigmoid1702Params) -> tirx.PrimExpr:
    c = consts(dtype_of(x))
    e = shift_exp(-tirx.abs(x), p.x0, p.n)
    sig_pos = (c(p.e0) * tirx.floordiv(c(2**31 - 1), c(p.e0) + e)) >> c(31 - p.sig_bits)
    return x * tirx.Select(x >= c(0), sig_pos, c(2**p.sig_bits) - sig_pos)


def _edge_raw(x: tirx.PrimExpr, p: EdgeGeluParams) -> tirx.PrimExpr:
    dtype = dtype_of(x)
    pre = requantize_expr(x, consts(dtype)(0), p.pre).astype(dtype)
    return ierf_gelu_raw(clamp(pre, -p.q_max, p.q_max), p.erf)


def _relu_raw(x: tirx.PrimExpr, p: ReluParams) -> tirx.PrimExpr:
    return tirx.max(x, consts(dtype_of(x))(0))


#: The elementwise variants' products before the output requantization, by their
#: constants' class (spec: :mod:`intvit.topi.gelu_ref`).
_ELEMENTWISE_RAW = {
    IBertGeluParams: _ibert_raw,
    Sigmoid1702Params: _sigmoid1702_raw,
    EdgeGeluParams: _edge_raw,
    ReluParams: _relu_raw,
}


#: Block annotation of a stage that only builds a constant table (computed once per call,
#: never per row: the row schedule leaves it at the root).
CONST_TABLE = "intvit.const_table"


def _select_tree(i: tirx.PrimExpr, values: tuple[int, ...], lo: int, hi: int, dtype: str):
    """``values[i]`` for ``lo <= i < hi`` as a balanced tree of selects (depth log2 n)."""
    if len(set(values[lo:hi])) == 1:
        return tirx.const(values[lo], dtype)
    mid = (lo + hi) // 2
    return tirx.Select(
        i < mid, _select_tree(i, values, lo, mid, dtype), _select_tree(i, values, mid, hi, dtype)
    )


def lut_gelu(q: te.Tensor, p: LutGeluParams, table: te.Tensor | None = None) -> te.Tensor:
    """``table[q + 128]``: one load per element (see
    :class:`~intvit.topi.gelu_params.LutGeluParams`). ``table``: the kernel's constant input
    (``p.table_array()``, what the model passes); without it, a 256-element stage of constants
    builds it on every call (a select tree per entry: about 6 us here, more than the gather
    of a digits model's 17 x 128 GELU)."""
    check_dtype("q", q.dtype, ("int8",))
    if table is None:
        table = te.compute(
            (LUT_SIZE,),
            lambda i: _select_tree(i, p.table, 0, LUT_SIZE, p.out_dtype),
            name="gelu_lut_table",
            attrs={CONST_TABLE: 1},
        )
    elif tuple(int(d) for d in table.shape) != (LUT_SIZE,) or str(table.dtype) != p.out_dtype:
        raise ValueError(f"lut GELU table must be {p.out_dtype} [{LUT_SIZE}]")
    return te.compute(
        q.shape, lambda *i: table[q(*i).astype("int32") + LUT_OFFSET], name="gelu_lut"
    )


def gelu(
    q: te.Tensor,
    params: GeluParams,
    acc_bits: int | None = None,
    table: te.Tensor | None = None,
) -> te.Tensor:
    """Integer GELU of ``q``; ``shiftgelu`` reduces over the last axis, the rest are
    elementwise; ``table``: the lut variant's table as an input (see :func:`lut_gelu`)."""
    check_dtype("q", q.dtype, INT_INPUTS)
    check_rank("q", tuple(int(d) for d in q.shape), 1, 4)
    if isinstance(params, LutGeluParams):
        return lut_gelu(q, params, table)
    dtype = acc_dtype(acc_bits or params.acc_bits)
    if isinstance(params, ShiftGeluParams):
        return _shift_gelu(q, params, dtype)
    raw = _ELEMENTWISE_RAW[type(params)]
    return te.compute(
        q.shape,
        lambda *i: requantize_expr(raw(q(*i).astype(dtype), params), 0, params.out),
        name=f"gelu_{params.variant}",
    )


def _shift_gelu(q: te.Tensor, p: ShiftGeluParams, dtype: str) -> te.Tensor:
    """I-ViT's ShiftGELU: ``x * sigmoid(1.702 x)``, its shift exponentials taken against
    the row's maximum (a reduction over the last axis)."""
    c = consts(dtype)
    mx = row_reduce(q, "max", dtype, "gelu_max")
    e_max = te.compute(
        mx.shape,
        lambda *i: shift_exp(-mx(*i), p.x0, p.n, max_shift=min(32, int(dtype[3:]) - 1)),
        name="gelu_exp_max",
    )

    def body(*i):
        x = q(*i).astype(dtype)
        e = shift_exp(x - mx(*i[:-1]), p.x0, p.n)
        total = tirx.min(e + e_max(*i[:-1]), c(2**31 - 1))
        sig = (e * tirx.floordiv(c(2**31 - 1), total)) >> c(31 - p.sig_bits + 1)
        return requantize_expr(x * sig, 0, p.out)

    return te.compute(q.shape, body, name=f"gelu_{p.variant}")

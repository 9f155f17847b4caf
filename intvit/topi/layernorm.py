"""TE computes of the integer LayerNorm variants; spec: :mod:`intvit.topi.layernorm_ref`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from intvit.topi.contract import check_dtype
from intvit.topi.intops import (
    acc_dtype,
    bit_length,
    consts,
    div_round_half_even,
    shift_right_round,
    shift_right_round_var,
)
from intvit.topi.layernorm_params import (
    EDGE_LN_HEADROOM,
    EDGE_LN_M,
    EdgeLayerNormParams,
    ILayerNormParams,
    LayerNormParams,
)
from intvit.topi.requantize import ChannelTables, requantize_expr
from intvit.topi.rowwise import check_rowwise_input, row_reduce
from intvit.topi.sqrt import isqrt


def layernorm_extra_tables(params: LayerNormParams) -> dict[str, np.ndarray]:
    """The per-channel inputs a LayerNorm kernel takes after its requantization tables: its
    fine-scale beta (in the accumulator dtype) where it has one (``ilayernorm``); none for
    ``edge``, whose beta is the requantization's bias."""
    if not params.fine_bias:
        return {}
    fine = np.asarray(params.fine_bias, dtype=acc_dtype(params.acc_bits))
    return {"fine_bias": np.ascontiguousarray(fine)}


#: The largest per-row buffer TVM keeps on the stack (``kMaxStackAlloca``); a longer one is
#: a ``TVMBackendAllocWorkspace`` call for every row.
STACK_ROW_BYTES = 1024


def layernorm(
    q: te.Tensor,
    params: LayerNormParams,
    acc_bits: int | None = None,
    tables: ChannelTables | None = None,
):
    """Integer LayerNorm over the last axis of int32 ``q``.

    Returns ``(out, tables)``: int8 output and the per-channel requantization tables the
    compiled kernel takes after ``q`` (``tables.tensors``, values from ``tables.arrays()``).
    """
    check_rowwise_input(q)
    check_dtype("q", q.dtype, ("int8", "int16", "int32"))
    if int(q.shape[-1]) != params.channels:
        raise ValueError(f"q has {int(q.shape[-1])} channels, params expect {params.channels}")
    dtype = acc_dtype(acc_bits or params.acc_bits)
    p = params
    tables = tables or ChannelTables.create(p.out, "ln_out", layernorm_extra_tables(p))
    pre = p.pre_shift

    def plus_fine(v, channel):
        """``v`` plus the channel's fine-scale beta, where the kernel has one."""
        return v + tables.extra[0][0][channel] if tables.extra else v

    def load(*i):
        return shift_right_round(q(*i).astype(dtype), pre, dtype)

    total = row_reduce(q, "sum", dtype, "ln_sum", fn=lambda v, i: shift_right_round(v, pre, dtype))
    mean = te.compute(
        total.shape, lambda *i: div_round_half_even(total(*i), p.channels), name="ln_mean"
    )

    def centred(*i):
        return load(*i) - mean(*i[:-1])

    row = _Row(q, p, dtype, centred, plus_fine, tables)
    return _NORMALIZE[type(p)](row), tables


@dataclass(frozen=True)
class _Row:
    """What both normalizations take: the input, the constants, the accumulator dtype, the
    centred values ``q - mean`` (after the pre-shift) and the epilogue's fine beta and
    requantization tables."""

    q: te.Tensor
    p: LayerNormParams
    dtype: str
    centred: Callable
    plus_fine: Callable
    tables: ChannelTables


def _ilayernorm_out(row: _Row) -> te.Tensor:
    """I-ViT's I-LayerNorm: the standard deviation by I-ViT's square root, one reciprocal
    factor per row."""
    q, p, dtype, centred = row.q, row.p, row.dtype, row.centred
    c = consts(dtype)
    # the squares go straight into the sum: a per-row buffer of them (8 bytes a channel
    # in int64) passed TVM's 1 KiB stack limit and cost a workspace allocation per row
    var = row_reduce(q, "sum", dtype, "ln_var", fn=lambda v, i: centred(*i) * centred(*i))
    std = isqrt(var, "ivit", acc_bits=int(dtype[3:]))
    factor = te.compute(
        var.shape,
        lambda *i: tirx.floordiv(c(2**31 - 1), tirx.max(std(*i), c(1))),
        name="ln_factor",
    )

    def out_body(*i):
        y = row.plus_fine((centred(*i) * factor(*i[:-1])) >> c(1), i[-1])
        return requantize_expr(y, i[-1], p.out, row.tables)

    return te.compute(q.shape, out_body, name="layernorm_ilayernorm")


def _edge_out(row: _Row) -> te.Tensor:
    """The edge LayerNorm: the centred values scaled down per row so their sum of squares
    fits, the converging Newton square root, values clamped to two deviations."""
    q, p, dtype, centred = row.q, row.p, row.dtype, row.centred
    c = consts(dtype)

    def y0(*i):
        return shift_right_round(centred(*i), p.v, dtype)

    ss0 = row_reduce(q, "sum", dtype, "ln_ss0", fn=lambda v, i: y0(*i) * y0(*i))
    v_row = te.compute(
        ss0.shape,
        lambda *i: tirx.max(c(p.v) - ((c(EDGE_LN_HEADROOM) - bit_length(ss0(*i))) >> c(1)), c(0)),
        name="ln_vrow",
    )

    def yr_expr(*i):
        return shift_right_round_var(centred(*i), v_row(*i[:-1]), dtype)

    # Recomputed where used, not stored, on rows past TVM's stack limit: a per-row buffer
    # that long costs a workspace allocation per row (DeiT-small: 384 int32, 1.5 KiB). Below
    # it, stored once and read twice: measured faster on short rows (digits: 64).
    long_row = p.channels * int(dtype[3:]) // 8 > STACK_ROW_BYTES
    yr = yr_expr if long_row else te.compute(q.shape, yr_expr, name="ln_yr")
    ss = row_reduce(q, "sum", dtype, "ln_ss", fn=lambda v, i: yr(*i) * yr(*i))
    ss1 = te.compute(ss.shape, lambda *i: ss(*i) + c(1), name="ln_ss1")
    den = isqrt(ss1, "newton", acc_bits=int(dtype[3:]))
    # den >= 1 whenever ss1 >= 1, i.e. for every input in the contract; the guard only keeps a
    # wrapped sum of squares (out-of-range input, e.g. a tuner's random data) from trapping
    factor = te.compute(
        ss.shape, lambda *i: tirx.floordiv(c(1 << p.k), tirx.max(den(*i), c(1))), name="ln_factor"
    )

    def edge_body(*i):
        bound = den(*i[:-1]) * c(2)
        y = tirx.min(tirx.max(yr(*i), -bound), bound)
        out = shift_right_round(y * factor(*i[:-1]), p.k - EDGE_LN_M, dtype)
        return requantize_expr(row.plus_fine(out, i[-1]), i[-1], p.out, row.tables)

    return te.compute(q.shape, edge_body, name="layernorm_edge")


#: Each variant's normalization, by its constants' class.
_NORMALIZE = {ILayerNormParams: _ilayernorm_out, EdgeLayerNormParams: _edge_out}

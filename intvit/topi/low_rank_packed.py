"""A low-rank linear ``x -> h = rq(x down^T + b1) -> h up^T + b2`` as one packed kernel: both
GEMMs on the same micro-kernel, the rank-``r`` intermediate ``h`` made per chunk of rows and
read back from L1 by the second GEMM, never stored whole.

Integer contract (the same integers as the two packed GEMMs apart, :mod:`.dense_packed`):
int8/uint8 ``x [..., K]``; int8 ``down [r, K]`` and ``up [N, r]`` packed at compile time;
int32 biases; ``h`` is ``rq1`` of the first accumulator (int8, ``rq1.out_dtype``), taken by
the second GEMM with the kernel's activation offset (``+128`` on a uint8-operand kernel, the
second bias compensating, see :func:`~.dense_packed.pack_bias`); int32 out ``[..., N]``.

Rows are padded to ``chunks`` of whole register tiles (padded rows are zeros in, never stored
out), and the schedule computes each chunk's ``x`` packing, first GEMM, ``h`` and second GEMM
together
(:func:`intvit.schedules.low_rank.schedule_low_rank_gemm` runs the chunks in parallel: one
parallel region where the two GEMMs apart take four, and each thread keeps its chunk's ``h``
in L1).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from intvit.topi.contract import check_dtype
from intvit.topi.dense_packed import (
    pack_activations,
    pack_bias,
    pack_weights,
    packed_acc,
    padded_shape,
    unpack_acc,
    x_offset,
)
from intvit.topi.gemm_kernel import GemmKernel
from intvit.topi.requantize import ChannelTables, requantize_expr
from intvit.topi.requantize_params import RequantParams

#: Stage names the schedule finds its blocks by (suffixes of the kernel's ``name``).
LR_X, LR_ACC, LR_H, LR_ACC2 = "_down_x", "_down_packed_acc", "_up_h", "_up_packed_acc"


def chunk_rows(m: int, kernel: GemmKernel, chunks: int) -> int:
    """Rows per chunk: the register tiles of ``m`` rows shared out evenly."""
    tiles = -(-m // kernel.m_tile)
    return -(-tiles // chunks) * kernel.m_tile


def low_rank_packed(
    x: te.Tensor,
    wp1: te.Tensor,
    bias1: te.Tensor,
    rq1: RequantParams,
    tables1: ChannelTables | None,
    kernel1: GemmKernel,
    wp2: te.Tensor,
    bias2: te.Tensor,
    kernel2: GemmKernel,
    rank: int,
    n_out: int,
    chunks: int,
    name: str = "low_rank",
) -> te.Tensor:
    """``out[..., n] = sum_j h[..., j] * up[n, j] + bias2[n]`` (int32, ``n < n_out``) with
    ``h[..., j] = rq1(sum_k x[..., k] * down[j, k] + bias1[j])`` (``j < rank``; zero on the
    first GEMM's padded columns), from weights and biases packed by :func:`pack_low_rank`."""
    check_dtype("x", x.dtype, ("int8", "uint8"))
    check_dtype("h", rq1.out_dtype, ("int8", "uint8"))
    if (kernel1.rows, kernel1.m_tile, kernel1.kpack) != (
        kernel2.rows,
        kernel2.m_tile,
        kernel2.kpack,
    ):
        raise ValueError(f"{name}: {kernel1.name} and {kernel2.name} tile rows differently")
    lead = [int(s) for s in x.shape[:-1]]
    k_dim = int(x.shape[-1])
    m = int(np.prod(lead))
    rows, kp = kernel1.rows, kernel1.kpack
    mc = chunk_rows(m, kernel1, chunks)
    k_pad = int(wp1.shape[1]) * kp
    width = int(wp1.shape[0]) * kernel1.lanes  # h: the first GEMM's padded columns
    if k_pad < k_dim or width < rank or int(wp2.shape[1]) * kp != width:
        raise ValueError(
            f"{name}: packed weights do not cover K={k_dim}, r={rank} (pack them with "
            "pack_low_rank)"
        )

    mp = chunks * mc
    xw = pack_activations(x, kernel1, mp, k_pad, f"{name}{LR_X}")
    acc1 = packed_acc(xw, wp1, kernel1, f"{name}_down")

    offset2 = x_offset(rq1.out_dtype, kernel2)
    lanes1 = kernel1.lanes

    def widen_h(mo, ko, mi, ki):
        # every padded column of the first GEMM is read (zeros past the rank): the schedule
        # derives each chunk's first GEMM from what h reads, and whole register tiles of it
        # are what the micro-kernel computes
        j = ko * kp + ki
        channel = j if width == rank else tirx.min(j, rank - 1)
        acc = acc1[mo, j // lanes1, mi, j % lanes1] + bias1[j]
        value = requantize_expr(acc, channel, rq1, tables1)
        if offset2:
            value = value.astype("int16") + tirx.const(offset2, "int16")
        value = value.astype(kernel2.operand)
        if width == rank:
            return value
        return tirx.if_then_else(j < rank, value, tirx.const(0, kernel2.operand))

    hw = te.compute((mp // rows, width // kp, rows, kp), widen_h, name=f"{name}{LR_H}")
    acc2 = packed_acc(hw, wp2, kernel2, f"{name}_up")

    return unpack_acc(acc2, bias2, lead, n_out, kernel2, f"{name}_packed_bias")


def pack_low_rank(
    down: np.ndarray,
    bias1: np.ndarray | None,
    x_dtype: str,
    up: np.ndarray,
    bias2: np.ndarray | None,
    h_dtype: str,
    kernel1: GemmKernel,
    kernel2: GemmKernel,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(wp1, b1, wp2, b2)`` for :func:`low_rank_packed`: ``down [r, K]`` packed for
    ``kernel1`` (its columns padded to the register tile), ``up [N, r]`` for ``kernel2`` with
    its depth padded to those same columns (zeros: ``h`` is zero there), each bias with its
    operand's offset folded in (:func:`~.dense_packed.pack_bias`)."""
    width, _ = padded_shape(down.shape[0], down.shape[1], kernel1)
    if width % kernel2.kpack:
        raise ValueError(
            f"{kernel1.name}'s tile of {width} columns is not whole {kernel2.kpack}-deep "
            "steps of the second GEMM (see intrinsics.first_factor_tile)"
        )
    up_wide = np.pad(up, ((0, 0), (0, width - up.shape[1])))
    return (
        pack_weights(down, kernel1),
        pack_bias(down, bias1, x_dtype, kernel1),
        pack_weights(up_wide, kernel2),
        pack_bias(up_wide, bias2, h_dtype, kernel2),
    )

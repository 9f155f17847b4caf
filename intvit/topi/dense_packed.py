"""The int8 GEMM with weights pre-packed for a dot-product micro-kernel
(:mod:`intvit.schedules.intrinsics`), its bias, and an optional requantization in the same
kernel. Same integer contract as :func:`intvit.topi.matmul.dense`: int8/uint8 ``x [..., K]``,
int8 weights (packed here at compile time), int32 bias; int32 out (or the requantized dtype).

Rows are padded to the register tile (``m_tile``) inside the kernel: the widening copy of
``x`` (packed ``[M/rows, K/kpack, rows, kpack]``, the micro-kernel's activation block
contiguous) writes zeros there, and the epilogue reads only the real rows. Widths that do not
divide the tile are padded the same way: the weights at packing time (zero columns up to the
register tile's ``lanes * n_vectors``, zero depth up to ``kpack``), the activations' depth
in the widening copy; padded products are zero and the epilogue writes only the real
columns. Accumulators are ``[M/rows, N/lanes, rows, lanes]``: one micro-kernel's output block
contiguous.

uint8 activations on an int8-operand micro-kernel (ARM ``sdot``) go in as ``x - 128`` (int8),
int8 ones on a uint8-operand kernel (x86 ``vpmaddubsw``) as ``x + 128`` (uint8); the bias
made by :func:`pack_bias` takes back ``offset * sum_k w[n, k]``: exact, as the
weights are constants, and ``|sum (x +- 128) w| <= 255 * 128 * K`` keeps int32 for
``K < 2**16``.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from intvit.topi.contract import check_dtype
from intvit.topi.gemm_kernel import GemmKernel

#: A dense GEMM with fewer column tiles than this (``lanes * n_vectors`` columns each) is
#: "narrow" (the first factor of a low-rank linear: ``N = r``): its rows are padded to
#: ``NARROW_ROW_CHUNKS`` register tiles, so the schedule can run that many row chunks in
#: parallel (:func:`intvit.schedules.gemm.schedule_packed_gemm`) instead of sharing 3
#: column tiles between 2 cores as 2 + 1.
NARROW_TILES = 8
NARROW_ROW_CHUNKS = 2

#: The stage that widens (dense) or packs (batch_matmul) the weight operand: the schedule
#: computes it per column tile, inside the parallel loop, where the micro-kernel reads it.
PACKED_W = "_packed_w"
#: A batch_matmul's column sums of its runtime ``b`` (``sum_k b[g, n, k]``), which take back
#: the offset of an ``a`` brought into the kernel's operand range: computed per column tile
#: like the packed ``b``.
COLUMN_SUMS = "_packed_colsum"


def padded_shape(n: int, k: int, kernel: GemmKernel) -> tuple[int, int]:
    """``(N, K)`` padded to the kernel's register tile: ``N`` to a multiple of ``lanes *
    n_vectors``, ``K`` to a multiple of ``kpack``."""
    n_tile = kernel.lanes * kernel.n_vectors
    return -(-n // n_tile) * n_tile, -(-k // kernel.kpack) * kernel.kpack


def pack_weights(w: np.ndarray, kernel: GemmKernel) -> np.ndarray:
    """int8 ``[N, K]`` -> int8 ``[Np/lanes, Kp/kpack, lanes, kpack]`` (``Np, Kp`` from
    :func:`padded_shape`, the padding zero). Stored as int8 whatever
    the kernel's operand dtype: an int16-operand kernel widens one column tile's panel at a
    time inside the kernel (:func:`dense_packed`), so the library and the weight traffic per
    inference are half what int16 storage costs."""
    if w.dtype != np.int8:
        raise TypeError(f"pack_weights: weights must be int8, got {w.dtype}")
    if not kernel.takes_weights(w):
        raise ValueError(
            f"pack_weights: {kernel.name} sums weights up to |w| <= {kernel.weight_max} "
            f"exactly, got |w| = {int(np.abs(w.astype(np.int16)).max())}"
        )
    n, k = w.shape
    lanes, kp = kernel.lanes, kernel.kpack
    n_pad, k_pad = padded_shape(n, k, kernel)
    w = np.pad(w, ((0, n_pad - n), (0, k_pad - k)))
    packed = w.reshape(n_pad // lanes, lanes, k_pad // kp, kp).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(packed)


def x_offset(x_dtype: str, kernel: GemmKernel) -> int:
    """What the kernel adds to ``x`` to bring it into its operand's range: -128 for uint8
    activations on an int8 kernel, +128 for int8 ones on a uint8 kernel, else 0."""
    if x_dtype == "uint8" and kernel.operand == "int8":
        return -128
    if x_dtype == "int8" and kernel.operand == "uint8":
        return 128
    return 0


def pack_bias(w: np.ndarray, bias: np.ndarray | None, x_dtype: str, kernel: GemmKernel):
    """The int32 bias :func:`dense_packed` takes (``Np`` entries, zero past ``N``): ``bias``
    minus the offset's contribution ``offset * sum_k w[n, k]`` (see :func:`x_offset`)."""
    n, k = w.shape
    b = np.zeros(n, np.int64) if bias is None else np.asarray(bias, np.int64)
    folded = b - x_offset(x_dtype, kernel) * w.astype(np.int64).sum(axis=1)
    if np.abs(folded).max(initial=0) >= 2**31:
        raise ValueError("the bias with the activation offset folded in does not fit int32")
    n_pad, _ = padded_shape(n, k, kernel)
    return np.pad(folded, (0, n_pad - n)).astype(np.int32)


def dense_packed(
    x: te.Tensor,
    wp: te.Tensor,
    bias: te.Tensor,
    kernel: GemmKernel,
    name: str = "dense",
    n_out: int | None = None,
) -> te.Tensor:
    """``out[..., n] = sum_k x[..., k] * w[n, k] + bias[n]`` (int32, ``n < n_out``, default
    all the packed columns) from packed ``wp`` and ``bias`` from :func:`pack_bias` (which folds
    in the activation offset where there is one)."""
    check_dtype("x", x.dtype, ("int8", "uint8"))
    check_dtype("bias", bias.dtype, ("int32",))
    check_dtype("wp", wp.dtype, ("int8",))
    lead = [int(s) for s in x.shape[:-1]]
    k_dim = int(x.shape[-1])
    lanes, kp = kernel.lanes, kernel.kpack
    n_dim = int(wp.shape[0]) * lanes if n_out is None else n_out
    k_pad = int(wp.shape[1]) * kp
    if k_pad < k_dim or n_dim > int(wp.shape[0]) * lanes:
        raise ValueError(f"{name}: packed weights {tuple(wp.shape)} do not cover K={k_dim}")
    m = int(np.prod(lead))
    n_tiles = -(-n_dim // (lanes * kernel.n_vectors))
    row_block = kernel.m_tile * (NARROW_ROW_CHUNKS if n_tiles < NARROW_TILES else 1)
    mp = -(-m // row_block) * row_block

    xw = pack_activations(x, kernel, mp, k_pad, f"{name}_packed_x")
    if kernel.weight_operand != "int8":  # the schedule widens one column tile's panel at a time
        wp = te.compute(
            wp.shape, lambda *i: wp(*i).astype(kernel.weight_operand), name=f"{name}{PACKED_W}"
        )
    acc = packed_acc(xw, wp, kernel, name)

    return unpack_acc(acc, bias, lead, n_dim, kernel, f"{name}_packed_bias")


def pack_activations(
    x: te.Tensor, kernel: GemmKernel, m_pad: int, k_pad: int, name: str
) -> te.Tensor:
    """``x [..., K]`` (int8/uint8, its leading axes flattened to rows) in the micro-kernel's
    activation layout ``[Mp/rows, Kp/kpack, rows, kpack]``, in its operand dtype (offset by
    :func:`x_offset`), zero in the padded rows and depth."""
    lead = [int(s) for s in x.shape[:-1]]
    k_dim = int(x.shape[-1])
    m = int(np.prod(lead))
    rows, kp = kernel.rows, kernel.kpack
    offset = x_offset(str(x.dtype), kernel)

    def row(flat):
        idx, rest = [], flat
        for size in reversed(lead):
            idx.append(rest % size)
            rest = rest // size
        return list(reversed(idx))

    def widen(r, k):
        inside = tirx.all(r < m, k < k_dim) if k_pad > k_dim else r < m
        kk = tirx.min(k, k_dim - 1) if k_pad > k_dim else k  # a min in the index: a gather
        value = x[(*row(tirx.min(r, m - 1)), kk)]
        if offset:
            value = value.astype("int16") + tirx.const(offset, "int16")
        value = value.astype(kernel.operand)
        return tirx.if_then_else(inside, value, tirx.const(0, kernel.operand))

    return te.compute(
        (m_pad // rows, k_pad // kp, rows, kp),
        lambda mo, ko, mi, ki: widen(mo * rows + mi, ko * kp + ki),
        name=name,
    )


def unpack_acc(
    acc: te.Tensor, bias: te.Tensor, lead: list[int], n_dim: int, kernel: GemmKernel, name: str
) -> te.Tensor:
    """``out[*lead, n] = acc[row / rows, n / lanes, row % rows, n % lanes] + bias[n]`` (int32)
    from the accumulators ``[Mp/rows, Np/lanes, rows, lanes]`` of the flattened rows."""
    rows, lanes = kernel.rows, kernel.lanes

    def out(*i):
        flat = 0
        for j, size in zip(i[:-1], lead, strict=True):
            # unit axes left out: with them, TVM 0.27's reverse_compute_at infers a wrong
            # row range for the epilogue (``v_i0 * 197 + v_i1`` gave one row per tile)
            flat = flat * size + j if size > 1 else flat
        n = i[-1]
        return acc[flat // rows, n // lanes, flat % rows, n % lanes] + bias[n]

    return te.compute((*lead, n_dim), out, name=name)


def packed_acc(xw: te.Tensor, wp: te.Tensor, kernel: GemmKernel, name: str) -> te.Tensor:
    """``acc[..., mo, no, mi, ni] = sum_k x[mo*rows + mi, k] * w[no*lanes + ni, k]`` (int32)
    from packed activations ``xw [..., M/rows, K/kpack, rows, kpack]`` and weights ``wp
    [..., N/lanes, K/kpack, lanes, kpack]`` (both with the same leading group axes)."""
    *group, m_blocks, k_blocks, rows, kp = (int(s) for s in xw.shape)
    n_blocks, lanes = int(wp.shape[-4]), kernel.lanes
    rk = te.reduce_axis((0, k_blocks * kp), name="k")

    def dot(*i):
        *g, mo, no, mi, ni = i
        a = xw[(*g, mo, rk // kp, mi, rk % kp)].astype("int32")
        return te.sum(a * wp[(*g, no, rk // kp, ni, rk % kp)].astype("int32"), axis=rk)

    return te.compute((*group, m_blocks, n_blocks, rows, lanes), dot, name=f"{name}_packed_acc")


def batch_matmul_packed(a: te.Tensor, b: te.Tensor, kernel: GemmKernel, name="batch_matmul"):
    """``out[g, i, j] = sum_k a[g, i, k] * b[g, j, k]`` (int32), same contract as
    :func:`intvit.topi.matmul.batch_matmul`. Both operands are runtime tensors: ``b`` is
    packed inside the kernel, and M, N, K are zero-padded to the micro-kernel's tile. An
    int16-operand kernel takes int8 or uint8 on either side (both widened); an int8 or uint8
    one takes ``b`` in its weight dtype and ``a`` as it is or offset into its operand range
    (:func:`x_offset`: uint8 ``a`` - 128 on ARM's int8 kernels), the offset taken back per
    column from ``b``'s column sums (``- offset * sum_k b[g, j, k]``, computed in the kernel;
    exact: ``|sum (a + offset) b| <= 255 * 128 * K`` fits int32 for ``K < 2**16``)."""
    check_dtype("a", a.dtype, ("int8", "uint8"))
    check_dtype("b", b.dtype, ("int8", "uint8"))
    if kernel.operand != "int16":
        check_dtype("b", b.dtype, (kernel.weight_operand,))
    g, m, k_dim = (int(s) for s in a.shape)
    n = int(b.shape[1])
    lanes, kp = kernel.lanes, kernel.kpack
    mp = -(-m // kernel.m_tile) * kernel.m_tile
    n_tile = lanes * kernel.n_vectors
    np_ = -(-n // n_tile) * n_tile
    kpad = -(-k_dim // kp) * kp

    offset = x_offset(str(a.dtype), kernel)

    def widen(t, rows, gi, r, k, dtype: str, offset: int = 0):
        inside = tirx.all(r < rows, k < k_dim)
        value = t[gi, tirx.min(r, rows - 1), tirx.min(k, k_dim - 1)]
        if offset:
            value = value.astype("int16") + tirx.const(offset, "int16")
        return tirx.if_then_else(inside, value.astype(dtype), tirx.const(0, dtype))

    rows = kernel.rows
    aw = te.compute(
        (g, mp // rows, kpad // kp, rows, kp),
        lambda gi, mo, ko, mi, ki: widen(
            a, m, gi, mo * rows + mi, ko * kp + ki, kernel.operand, offset
        ),
        name=f"{name}_packed_x",
    )
    bw = te.compute(
        (g, np_ // lanes, kpad // kp, lanes, kp),
        lambda gi, no, ko, ni, ki: widen(
            b, n, gi, no * lanes + ni, ko * kp + ki, kernel.weight_operand
        ),
        name=f"{name}{PACKED_W}",
    )
    acc = packed_acc(aw, bw, kernel, name)
    if offset:
        rk = te.reduce_axis((0, k_dim), name="kc")
        sums = te.compute(
            (g, n),
            lambda gi, j: te.sum(b[gi, j, rk].astype("int32"), axis=rk),
            name=f"{name}{COLUMN_SUMS}",
        )

    def out(gi, i, j):
        value = acc[gi, i // rows, j // lanes, i % rows, j % lanes]
        return value - tirx.const(offset, "int32") * sums[gi, j] if offset else value

    return te.compute((g, m, n), out, name=f"{name}_packed_out")

"""Relax operators for every integer kernel, each a thin wrapper around its TE compute in
:mod:`intvit.topi` (``call_tir`` of a PrimFunc with int32 indices: :mod:`.emit`). Per-channel
constants (requantization tables, weights, biases) become Relax constants passed to the kernel.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import numpy as np
from tvm import relax

from intvit.relax_ops.emit import emit_te
from intvit.topi import gelu as gelu_te
from intvit.topi import layernorm as layernorm_te
from intvit.topi import matmul, residual
from intvit.topi import softmax as softmax_te
from intvit.topi.kinds import (
    DATA,
    FIRST_GEMM_KERNEL_ATTR,
    FIRST_GEMM_VECTORS_ATTR,
    GELU,
    GEMM,
    GEMM_KERNEL_ATTR,
    LAYERNORM,
    LOW_RANK_GEMM,
    PACKED_GEMM,
    REQUANTIZE,
    RESIDUAL,
    ROW_CHUNKS_ATTR,
    SCORES,
    SOFTMAX,
)
from intvit.topi.registry import get_variant
from intvit.topi.requantize import ChannelTables
from intvit.topi.requantize import requantize as requantize_te
from intvit.topi.requantize_params import RequantParams

#: The dot-product micro-kernels GEMMs are packed for, in the order each GEMM tries them
#: (empty: TVM's default int8 GEMM).
_GEMM_KERNELS: contextvars.ContextVar = contextvars.ContextVar("gemm_kernels", default=())


#: The cores the kernels will run on: a fused low-rank linear splits its rows in this many
#: chunks (its one parallel loop).
_CORES: contextvars.ContextVar = contextvars.ContextVar("cores", default=2)


@contextlib.contextmanager
def gemm_kernels(kernels, cores: int = 2):
    """Emit GEMMs with weights packed for the first of ``kernels`` (:class:`GemmKernel`, see
    :func:`~intvit.schedules.intrinsics.kernel_for_gemm`) that takes them, for a target with
    ``cores`` cores."""
    tokens = _GEMM_KERNELS.set(tuple(kernels)), _CORES.set(max(1, int(cores)))
    try:
        yield
    finally:
        _GEMM_KERNELS.reset(tokens[0])
        _CORES.reset(tokens[1])


def _tables(params: RequantParams) -> list[relax.Constant]:
    n = params.channels
    return [
        relax.const(np.broadcast_to(a, (n,)).astype(params.table_dtype)) for a in params.arrays()
    ]


def requantize(bb: relax.BlockBuilder, x: relax.Expr, params: RequantParams, name="rq"):
    if params.channels == 1:
        return emit_te(
            bb,
            lambda q: requantize_te(q, params, name)[0],
            x,
            primfunc_name_hint=name,
            kind=REQUANTIZE,
        )

    def fn(q, m, s, b):
        return requantize_te(q, params, name, ChannelTables(m, s, b, params))[0]

    return emit_te(bb, fn, x, *_tables(params), primfunc_name_hint=name, kind=REQUANTIZE)


def _packed_kernel(x, weight: np.ndarray):
    from intvit.schedules.intrinsics import kernel_for_gemm

    return kernel_for_gemm(_GEMM_KERNELS.get(), str(x.ty.dtype), weight)


def dense(bb, x, weight: np.ndarray, bias: np.ndarray | None, name="dense", rq=None):
    """int32 GEMM (+bias); with ``rq``, requantized in the same kernel when it is packed."""
    if rq is None:
        return _dense(bb, x, weight, bias, name, lambda acc: acc)
    tables = _tables(rq) if rq.channels > 1 else []

    def requantized(acc, *t):
        ct = ChannelTables(*t, rq) if t else None
        return requantize_te(acc, rq, f"{name}_rq", ct)[0]

    return _dense(bb, x, weight, bias, name, requantized, tables, lambda a: requantize(bb, a, rq))


def dense_residual(
    bb, h, weight, bias, name, x, skip: RequantParams, branch: RequantParams, lo: int, hi: int
):
    """``residual_add(x, dense(h))``: on a packed GEMM, the residual add is its epilogue (the
    int32 accumulator never goes to memory); the same integers as the two ops apart."""
    tables = _tables(branch) if branch.channels > 1 else []

    def add(acc, r, *t):
        ct = ChannelTables(*t, branch) if t else None
        return residual.residual_add(r, acc, skip, branch, lo, hi, ct)

    return _dense(
        bb,
        h,
        weight,
        bias,
        name,
        add,
        [x, *tables],
        lambda acc: residual_add(bb, x, acc, skip, branch, lo, hi),
    )


@dataclass(frozen=True)
class LowRankInput:
    """``x`` through the first factor of a low-rank linear (``weight [r, K]``, requantized to
    int8 by ``rq``), not computed yet: the dense that takes it (:func:`dense`,
    :func:`dense_residual`) computes both factors in one kernel where both GEMMs have the same
    micro-kernel (:mod:`intvit.topi.low_rank_packed`), else this factor as a GEMM of its own
    first. The same integers either way."""

    x: relax.Expr
    weight: np.ndarray
    bias: np.ndarray | None
    rq: RequantParams
    name: str

    def materialize(self, bb) -> relax.Expr:
        return dense(bb, self.x, self.weight, self.bias, name=self.name, rq=self.rq)


#: A fused low-rank linear's rows are split in one chunk per core (one parallel loop) when
#: its GEMMs reach this many MACs (as a packed GEMM's parallel loop,
#: intvit.schedules.gemm.MIN_PARALLEL_MACS), else run as one chunk.
LOW_RANK_PARALLEL_MACS = 1 << 20


def _low_rank_kernels(first: LowRankInput, weight: np.ndarray):
    """The micro-kernels of a low-rank linear's two GEMMs, where one kernel can run both
    (same instruction, operands and row tiling, int8 weights as stored); else None."""
    a = _packed_kernel(first.x, first.weight)
    from intvit.schedules.intrinsics import first_factor_tile, kernel_for_gemm

    b = kernel_for_gemm(_GEMM_KERNELS.get(), first.rq.out_dtype, weight)
    if a is None or b is None or first.rq.out_dtype not in ("int8", "uint8"):
        return None
    a = first_factor_tile(_GEMM_KERNELS.get(), a, first.weight.shape[0])
    same = (a.intrin, a.operand, a.rows, a.m_tile, a.kpack) == (
        b.intrin,
        b.operand,
        b.rows,
        b.m_tile,
        b.kpack,
    )
    if not same or a.weight_operand != "int8":
        return None
    return a, b


def _dense_low_rank(bb, first: LowRankInput, weight, bias, name, epilogue, extra):
    """The fused low-rank linear (both factors, then ``epilogue(acc, *extra)``), or None
    where its GEMMs cannot share one kernel."""
    kernels = _low_rank_kernels(first, weight)
    if kernels is None:
        return None
    from intvit.schedules.gemm import PACKED_FUNC
    from intvit.topi.low_rank_packed import low_rank_packed, pack_low_rank

    k1, k2 = kernels
    rank, k_dim = first.weight.shape
    shape = [int(s) for s in first.x.ty.shape]
    rows = int(np.prod(shape[:-1]))
    macs = rows * rank * (k_dim + weight.shape[0])
    tiles = -(-rows // k1.m_tile)
    chunks = min(_CORES.get(), tiles) if macs >= LOW_RANK_PARALLEL_MACS else 1
    rq = first.rq
    tables1 = _tables(rq) if rq.channels > 1 else []
    wp1, b1, wp2, b2 = pack_low_rank(
        first.weight, first.bias, str(first.x.ty.dtype), weight, bias, rq.out_dtype, k1, k2
    )
    args = [first.x, relax.const(wp1), relax.const(b1), *tables1]
    args += [relax.const(wp2), relax.const(b2), *extra]
    n_tables = len(tables1)

    def compute(q, w1, b1, *rest):
        t1, (w2, b2, *more) = rest[:n_tables], rest[n_tables:]
        ct = ChannelTables(*t1, rq) if t1 else None
        acc = low_rank_packed(
            q, w1, b1, rq, ct, k1, w2, b2, k2, rank, weight.shape[0], chunks, name
        )
        return epilogue(acc, *more)

    return emit_te(
        bb,
        compute,
        *args,
        primfunc_name_hint=name + PACKED_FUNC,
        kind=LOW_RANK_GEMM,
        attrs={
            GEMM_KERNEL_ATTR: k2.name,
            FIRST_GEMM_KERNEL_ATTR: k1.name,
            FIRST_GEMM_VECTORS_ATTR: str(k1.n_vectors),
            ROW_CHUNKS_ATTR: str(chunks),
        },
    )


def _dense(bb, x, weight, bias, name, epilogue, extra=(), unfused=None):
    """The GEMM ``x [.., K] x weight [N, K]^T + bias`` followed by ``epilogue(acc, *extra)``
    (TE, elementwise over the int32 accumulator) in one packed kernel; without a packed
    micro-kernel, TVM's default GEMM then ``unfused(acc)`` (Relax ops) or the accumulator.
    ``x`` may be a :class:`LowRankInput`."""
    if isinstance(x, LowRankInput):
        fused = _dense_low_rank(bb, x, weight, bias, name, epilogue, extra)
        if fused is not None:
            return fused
        x = x.materialize(bb)
    kernel = _packed_kernel(x, weight)
    if kernel is None:
        acc = _dense_default(bb, x, weight, bias, name)
        return acc if unfused is None else unfused(acc)
    from intvit.schedules.gemm import PACKED_FUNC
    from intvit.topi.dense_packed import dense_packed, pack_bias, pack_weights

    b = pack_bias(weight, bias, str(x.ty.dtype), kernel)
    args = [x, relax.const(pack_weights(weight, kernel)), relax.const(b), *extra]
    return emit_te(
        bb,
        lambda q, w, c, *rest: epilogue(
            dense_packed(q, w, c, kernel, name, n_out=weight.shape[0]), *rest
        ),
        *args,
        primfunc_name_hint=name + PACKED_FUNC,
        kind=PACKED_GEMM,
        attrs={GEMM_KERNEL_ATTR: kernel.name},
    )


def _dense_default(bb, x, weight: np.ndarray, bias: np.ndarray | None, name="dense"):
    args = [x, relax.const(np.ascontiguousarray(weight))]
    if bias is not None:
        args.append(relax.const(np.ascontiguousarray(bias.astype(np.int32))))
    return emit_te(bb, matmul.dense, *args, primfunc_name_hint=name, kind=GEMM)


def batch_matmul(bb, a, b, name="batch_matmul", rq: RequantParams | None = None):
    """int32 ``a [G, M, K] x b [G, N, K]^T``; with a per-tensor ``rq``, requantized (in the
    packed kernel's epilogue when there is one)."""
    if rq is not None and rq.channels != 1:
        raise ValueError("batch_matmul requantizes per tensor only")
    kernel = _batch_matmul_kernel(str(a.ty.dtype), str(b.ty.dtype))
    if kernel is not None:
        from intvit.schedules.gemm import PACKED_FUNC
        from intvit.topi.dense_packed import batch_matmul_packed

        def fn(x, y):
            acc = batch_matmul_packed(x, y, kernel, name)
            return acc if rq is None else requantize_te(acc, rq, f"{name}_rq")[0]

        return emit_te(
            bb,
            fn,
            a,
            b,
            primfunc_name_hint=name + PACKED_FUNC,
            kind=PACKED_GEMM,
            attrs={GEMM_KERNEL_ATTR: kernel.name},
        )
    acc = emit_te(bb, matmul.batch_matmul, a, b, primfunc_name_hint=name, kind=GEMM)
    return acc if rq is None else requantize(bb, acc, rq)


def _batch_matmul_kernel(a_dtype: str, b_dtype: str):
    """The micro-kernel for a matmul of two runtime tensors, among those that sum any int8
    value exactly (no 7-bit guarantee on runtime values): first one whose operand dtypes are
    ``a``'s and ``b``'s as they are (``avx-vnni`` for uint8 x int8, attention probabilities
    times values; the ARM kernels, ``sdot``, ``smmla`` and NEON ``smull`` + ``sadalp``, for
    int8 x int8, queries times keys); else one that takes ``b`` as it is and ``a`` offset
    into its range, compensated by ``b``'s column sums in the kernel (ARM's probabilities
    times values; queries times keys on ``avx-vnni``, 3x197x197x64 on 2 threads in a one-off
    timing: 45 us against 57 on ``vpmaddwd``); else an int16-operand one (both widened); None:
    TVM's default lowering."""
    exact = [k for k in _GEMM_KERNELS.get() if k.weight_max >= 128]
    same = [k for k in exact if (k.operand, k.weight_operand) == (a_dtype, b_dtype)]
    offset = [k for k in exact if k.weight_operand == b_dtype and k.operand in ("int8", "uint8")]
    widened = [k for k in exact if k.operand == "int16"]
    return next(iter(same + offset + widened), None)


def softmax(bb, x, params, name="softmax"):
    return emit_te(
        bb, lambda q: softmax_te.softmax(q, params), x, primfunc_name_hint=name, kind=SOFTMAX
    )


def gelu(bb, x, params, name="gelu"):
    if get_variant("gelu", params.variant).table_input:  # a constant input, not rebuilt
        table = relax.const(params.table_array())
        return emit_te(
            bb,
            lambda q, t: gelu_te.gelu(q, params, table=t),
            x,
            table,
            primfunc_name_hint=name,
            kind=GELU,
        )
    return emit_te(bb, lambda q: gelu_te.gelu(q, params), x, primfunc_name_hint=name, kind=GELU)


def layernorm(bb, x, params, name="layernorm"):
    extra = layernorm_te.layernorm_extra_tables(params)

    def fn(q, m, s, b, *more):
        tables = ChannelTables(m, s, b, params.out, tuple(zip(more, extra.values(), strict=True)))
        return layernorm_te.layernorm(q, params, tables=tables)[0]

    consts = [*_tables(params.out), *(relax.const(v) for v in extra.values())]
    return emit_te(bb, fn, x, *consts, primfunc_name_hint=name, kind=LAYERNORM)


def residual_add(bb, x, acc, skip: RequantParams, branch: RequantParams, lo, hi, name="residual"):
    if branch.channels == 1:
        return emit_te(
            bb,
            lambda a, c: residual.residual_add(a, c, skip, branch, lo, hi),
            x,
            acc,
            primfunc_name_hint=name,
            kind=RESIDUAL,
        )

    def fn(a, c, m, s, b):
        return residual.residual_add(a, c, skip, branch, lo, hi, ChannelTables(m, s, b, branch))

    return emit_te(bb, fn, x, acc, *_tables(branch), primfunc_name_hint=name, kind=RESIDUAL)


def split_heads(bb, qkv, heads: int):
    """``[B, N, 3*D]`` -> ``(q, k, v^T)`` per head (one kernel, see ``residual.split_heads``)."""
    parts = emit_te(
        bb, lambda x: residual.split_heads(x, heads), qkv, primfunc_name_hint="heads", kind=DATA
    )
    return tuple(bb.emit(relax.TupleGetItem(parts, i)) for i in range(3))


def add_tokens(bb, x, prefix: np.ndarray, pos: np.ndarray, lo, hi):
    return emit_te(
        bb,
        lambda a, p, q: residual.add_tokens(a, p, q, lo, hi),
        x,
        relax.const(prefix.astype(np.int32)),
        relax.const(pos.astype(np.int32)),
        primfunc_name_hint="add_tokens",
        kind=RESIDUAL,
    )


def im2col(bb, x, patch: int):
    return emit_te(
        bb, lambda q: residual.im2col(q, patch), x, primfunc_name_hint="im2col", kind=DATA
    )


def windows(bb, x, grid: int, ws: int, shift: int):
    return emit_te(
        bb,
        lambda q: residual.windows(q, grid, ws, shift),
        x,
        primfunc_name_hint="windows",
        kind=DATA,
    )


def unwindows(bb, x, grid: int, ws: int, shift: int):
    return emit_te(
        bb,
        lambda q: residual.unwindows(q, grid, ws, shift),
        x,
        primfunc_name_hint="unwindows",
        kind=DATA,
    )


def reshape(bb, x, shape):
    return bb.emit(relax.op.reshape(x, shape))


def permute(bb, x, axes):
    return bb.emit(relax.op.permute_dims(x, axes))


def take_token(bb, x, index: int):
    """``x[:, index]`` of ``[B, N, D]`` -> ``[B, D]`` (a constant index in range: ``clip`` mode
    costs nothing, and TVM's ``fast`` mode warns of out-of-bounds segfaults at every build)."""
    return bb.emit(relax.op.take(x, relax.const(index, "int64"), axis=1, mode="clip"))


def token_sum(bb, x):
    """int8 ``[B, N, D]`` -> int32 sum over tokens ``[B, D]`` (Swin's average pool numerator)."""
    return emit_te(bb, residual.token_sum, x, primfunc_name_hint="token_sum", kind=DATA)


def add_score_bias(bb, scores, bias: np.ndarray, mask, nw: int, heads: int, rq: RequantParams):
    """Swin scores: ``requantize(acc + bias)``, masked entries set to ``MASKED`` (int32)."""
    from intvit.quant.int_swin import MASKED

    n = int(bias.shape[-1])
    args = [scores, relax.const(bias.astype(np.int32))]
    if mask is not None:
        args.append(relax.const(mask.astype(np.int8)))

    def fn(acc, b, m=None):
        return residual.window_scores(acc, b, m, nw, heads, n, rq, MASKED)

    return emit_te(bb, fn, *args, primfunc_name_hint="window_scores", kind=SCORES)

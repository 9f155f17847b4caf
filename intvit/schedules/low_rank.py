"""The schedule of the fused low-rank linear (:mod:`intvit.topi.low_rank_packed`): one parallel
loop over chunks of rows; per chunk, the activations' packing, the first GEMM (register-tiled
and tensorized, its requantization to ``h`` done on the register tile's accumulators), then
the second GEMM reading that chunk's ``h`` from L1, its epilogue on its register tile's
accumulators (:func:`intvit.schedules.gemm.register_epilogue`) or, for per-channel tables or
a residual input, on the chunk's rows after its tiles.

Loop nest per GEMM, inside the chunk: ``column tile / row tile / k (kpack steps) / rows x
vectors (unrolled) / intrinsic``, as :func:`~intvit.schedules.gemm.schedule_packed_gemm`.

Its knobs (:class:`LowRankKnobs`), what a tuning job searches: the first GEMM's row tile
(its vectors are fixed: ``h``'s columns are whole tiles of it, see
:func:`~intvit.schedules.intrinsics.first_factor_tile`) and the second GEMM's register tile,
rows x vectors, each sampled with ``sample_perfect_tile`` so that every value divides the
chunk's row blocks and the output's column blocks. Every value computes the same integers:
the tiles only reorder int32 additions that cannot overflow, and ``h`` is complete for a
chunk before the second GEMM reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import s_tir, tirx

from intvit.schedules.gemm import (
    max_tile,
    parallel_epilogue,
    register_epilogue,
    sampled_split,
    tile_factors,
    tileable_epilogue,
)
from intvit.schedules.intrinsics import first_factor_tile
from intvit.topi.gemm_kernel import GemmKernel
from intvit.topi.low_rank_packed import LR_ACC, LR_ACC2, LR_H, LR_X
from intvit.topi.requantize_params import RequantParams


@dataclass(frozen=True)
class LowRankKnobs:
    """A fused low-rank linear's register tiles: the first GEMM's rows (its vectors are
    fixed), and the second GEMM's rows and vectors; rows are multiples of the micro-kernel's
    rows."""

    first_rows: int
    second_rows: int
    second_vectors: int

    def __str__(self) -> str:
        return f"{self.first_rows}x- {self.second_rows}x{self.second_vectors}"

    @classmethod
    def default(cls, first: GemmKernel, second: GemmKernel) -> LowRankKnobs:
        """The hand-chosen tiles: each kernel's own."""
        return cls(first.m_tile, second.m_tile, second.n_vectors)


def _tile(
    sch: s_tir.Schedule,
    block,
    kernel: GemmKernel,
    chunks: int = 0,
    tile: tuple[int, int] | None = None,
    sample_vectors: bool = True,
):
    """Split and order a packed GEMM's loops ``(mb, no, mi, ni, k)`` (under the chunk loop, or
    with ``chunks``, split into that many chunks of row tiles first) for the register tile
    ``tile`` (rows, vectors; None: sampled; vectors fixed at the kernel's without
    ``sample_vectors``): returns (chunk or None, column tile, row tile, k step, rows,
    vectors, row, lane)."""
    m, n, r, lane, k = sch.get_loops(block)[-5:]
    chunk = None
    if chunks:
        chunk, m = sch.split(m, [chunks, None])
    most_rows, most_vectors = max_tile(kernel)
    rows, vectors = (None, None) if tile is None else (tile[0] // kernel.rows, tile[1])
    mo, mi = sampled_split(sch, m, rows, most_rows)
    if sample_vectors:
        no, nv = sampled_split(sch, n, vectors, most_vectors)
    else:
        no, nv = sch.split(n, [None, kernel.n_vectors])
    ko, ki = sch.split(k, [None, kernel.kpack])
    sch.reorder(no, mo, ko, mi, nv, r, lane, ki)
    return chunk, no, mo, ko, mi, nv, r, lane


def _tensorize(sch: s_tir.Schedule, block, loops, kernel: GemmKernel) -> None:
    _, _, _, ko, mi, nv, r, lane = loops
    sch.decompose_reduction(block, ko)
    sch.tensorize(r if kernel.rows > 1 else lane, kernel.intrin)
    sch.unroll(mi)
    sch.unroll(nv)


def _vectorize_h(sch: s_tir.Schedule, block, kernel: GemmKernel) -> None:
    """``h`` of one register tile: ``[rows in tile, k steps, row, kpack]`` -> per row, the
    tile's columns in vectors of the first kernel's lanes (one requantized vector each)."""
    mo, ko, mi, ki = sch.get_loops(block)[-4:]
    sch.reorder(mo, mi, ko, ki)
    vec, lane = sch.split(sch.fuse(ko, ki), [None, kernel.lanes])  # the tile's columns
    sch.unroll(vec)
    sch.vectorize(lane)
    sch.unroll(mi)
    sch.unroll(mo)


def _check_whole_tiles(sch: s_tir.Schedule, h, kernel: GemmKernel) -> None:
    """``h``'s columns (``[.., width/kpack, rows, kpack]``) must be a whole number of the
    first GEMM's register tiles, each a whole number of ``h``'s ``kpack`` steps (``smmla``'s
    2-column vectors 4 at a time), so that each tile's ``h`` comes from that tile's
    accumulators alone: what :func:`~intvit.schedules.intrinsics.first_factor_tile` and
    :func:`~intvit.topi.low_rank_packed.pack_low_rank` give."""
    *_, steps, _, kpack = sch.get_loops(h)
    width = int(sch.get(steps).extent) * int(sch.get(kpack).extent)
    columns = kernel.lanes * kernel.n_vectors
    if width % columns or columns % kernel.kpack:
        raise ValueError(
            f"{kernel.name}: h's {width} columns are not whole tiles of {kernel.n_vectors} "
            f"vectors of whole {kernel.kpack}-deep steps (see intrinsics.first_factor_tile, "
            "low_rank_packed.pack_low_rank)"
        )


def schedule_low_rank_gemm(
    func: tirx.PrimFunc,
    first: GemmKernel,
    second: GemmKernel,
    chunks: int,
    parallel: bool = True,
    knobs: LowRankKnobs | None = None,
) -> tirx.PrimFunc:
    """Schedule a fused low-rank PrimFunc whose GEMMs are packed for ``first`` (down) and
    ``second`` (up), its rows padded to ``chunks`` chunks of register tiles
    (:func:`~intvit.topi.low_rank_packed.low_rank_packed`), with ``knobs`` (default: each
    kernel's tile); with ``parallel``, the chunks run on the cores. Marked scheduled."""
    sch = low_rank_schedule(func, first, second, chunks, parallel, knobs)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def low_rank_schedule(
    func: tirx.PrimFunc,
    first: GemmKernel,
    second: GemmKernel,
    chunks: int,
    parallel: bool = True,
    knobs: LowRankKnobs | None = None,
) -> s_tir.Schedule:
    """The schedule, with its trace, of :func:`schedule_low_rank_gemm` (what a tuning job
    measures first and its database replays)."""
    sch = s_tir.Schedule(func)
    apply_low_rank(
        sch, first, second, chunks, parallel, knobs or LowRankKnobs.default(first, second)
    )
    return sch


def low_rank_space(first: GemmKernel, second: GemmKernel, chunks: int, parallel: bool):
    """MetaSchedule's design space of a fused low-rank linear: its tiles sampled
    (``ScheduleFn``'s ``[Schedule] -> list[Schedule]``)."""

    def space(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        apply_low_rank(sch, first, second, chunks, parallel, None)
        return [sch]

    return space


def apply_low_rank(
    sch: s_tir.Schedule,
    first: GemmKernel,
    second: GemmKernel,
    chunks: int,
    parallel: bool,
    knobs: LowRankKnobs | None,
) -> None:
    """Schedule the fused low-rank linear in ``sch`` with ``knobs`` (None: sampled)."""
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    first_tile = None if knobs is None else (knobs.first_rows, first.n_vectors)
    second_tile = None if knobs is None else (knobs.second_rows, knobs.second_vectors)

    def stage(suffix: str):
        return sch.get_sblock(next(n for n in names if n.endswith(suffix)))

    acc2 = stage(LR_ACC2)
    loops2 = _tile(sch, acc2, second, chunks, second_tile)
    chunk = loops2[0]
    for suffix in (LR_H, LR_ACC, LR_X):  # each consumer is under the chunk before its producer
        sch.compute_at(stage(suffix), chunk, preserve_unit_loops=True)
    # the second GEMM's accumulators stay in registers; its epilogue on them, per row tile
    writeback2 = sch.cache_write(acc2, 0, "global")
    sch.reverse_compute_at(writeback2, loops2[2], preserve_unit_loops=True)
    acc2_index = names.index(sch.get(acc2).name_hint)
    # on the register tile where the output's columns are whole tiles of the kernel's (none
    # padded: then whole tiles of any sampled tile, which divides the column blocks)
    tiled = register_epilogue(sch, names, acc2_index, writeback2, loops2[2], second, False)
    if not tiled:  # per-channel tables or a residual: the epilogue per chunk, after its tiles
        sch.vectorize(sch.get_loops(writeback2)[-1])
        last = tileable_epilogue(sch, names, acc2_index, second.lanes * second.n_vectors, False)
        if last is not None:
            sch.reverse_compute_at(last, chunk, preserve_unit_loops=True)
            sch.vectorize(sch.get_loops(last)[-1])
            tiled = True

    h = stage(LR_H)
    _check_whole_tiles(sch, h, first)
    acc1 = stage(LR_ACC)
    loops1 = _tile(sch, acc1, first, tile=first_tile, sample_vectors=False)
    writeback1 = sch.cache_write(acc1, 0, "global")
    sch.reverse_compute_at(writeback1, loops1[2], preserve_unit_loops=True)
    # h per register tile, from the accumulators in registers
    sch.reverse_compute_at(h, loops1[2], preserve_unit_loops=True)
    sch.compute_inline(writeback1)
    _vectorize_h(sch, h, first)

    if parallel and int(sch.get(chunk).extent) > 1:
        sch.parallel(chunk)  # before tensorize: parallel needs the blocks' affine bindings
    _tensorize(sch, acc1, loops1, first)
    _tensorize(sch, acc2, loops2, second)
    if not tiled:
        parallel_epilogue(sch, names, acc2_index, parallel)


def low_rank_gemm_func(
    x_shape: tuple[int, ...],
    x_dtype: str,
    down: np.ndarray,
    up: np.ndarray,
    rq1: RequantParams,
    first: GemmKernel,
    second: GemmKernel,
    chunks: int,
    parallel: bool = True,
    knobs: LowRankKnobs | None = None,
) -> tirx.PrimFunc:
    """A standalone scheduled fused low-rank linear ``main(x, wp1, b1, wp2, b2, out)``
    (per-tensor ``rq1``; ``knobs``: default each kernel's tile): weights and biases from
    :func:`~intvit.topi.low_rank_packed.pack_low_rank` (the first GEMM's kernel as
    ``first_factor_tile((first,), first, rank)``), int32 out."""
    first = first_factor_tile((first,), first, down.shape[0])
    return schedule_low_rank_gemm(
        low_rank_workload(x_shape, x_dtype, down, up, rq1, first, second, chunks),
        first,
        second,
        chunks,
        parallel,
        knobs,
    )


def low_rank_workload(
    x_shape: tuple[int, ...],
    x_dtype: str,
    down: np.ndarray,
    up: np.ndarray,
    rq1: RequantParams,
    first: GemmKernel,
    second: GemmKernel,
    chunks: int,
) -> tirx.PrimFunc:
    """The unscheduled PrimFunc :func:`low_rank_gemm_func` schedules (``first``: the first
    GEMM's tile already, from :func:`~intvit.schedules.intrinsics.first_factor_tile`)."""
    from tvm import te

    from intvit.topi.low_rank_packed import low_rank_packed, pack_low_rank

    rank = down.shape[0]
    n = up.shape[0]
    x = te.placeholder(x_shape, x_dtype, name="x")
    packed = pack_low_rank(down, None, x_dtype, up, None, rq1.out_dtype, first, second)
    wp1, b1, wp2, b2 = (te.placeholder(a.shape, str(a.dtype)) for a in packed)
    out = low_rank_packed(x, wp1, b1, rq1, None, first, wp2, b2, second, rank, n, chunks)
    return te.create_prim_func([x, wp1, b1, wp2, b2, out])


def low_rank_knob_space(
    func: tirx.PrimFunc, first: GemmKernel, second: GemmKernel, chunks: int
) -> list[LowRankKnobs]:
    """Every point of a fused low-rank linear's tuned space: row tiles that divide a chunk's
    row blocks and second-GEMM vectors that divide its column blocks, each at most
    :func:`~intvit.schedules.gemm.max_tile`."""
    sch = s_tir.Schedule(func)
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    acc2 = sch.get_sblock(next(n for n in names if n.endswith(LR_ACC2)))
    m, n = (int(sch.get(lp).extent) for lp in sch.get_loops(acc2)[-5:-3])
    blocks = m // chunks
    first_rows = tile_factors(blocks, max_tile(first)[0])
    second_rows = tile_factors(blocks, max_tile(second)[0])
    vectors = tile_factors(n, max_tile(second)[1])
    return [
        LowRankKnobs(r1 * first.rows, r2 * second.rows, v)
        for r1 in first_rows
        for r2 in second_rows
        for v in vectors
    ]

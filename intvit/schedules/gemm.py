"""Schedules for the packed int8 GEMM: register-blocked and tensorized with a dot-product
intrinsic, weights streamed from L1 across row tiles, epilogue (bias, requantization) in the
same kernel. The register tile, the parallel split and where the epilogue runs are knobs
(:mod:`intvit.schedules.gemm_knobs`): :func:`default_knobs` is the hand-chosen point, and
:func:`packed_gemm_space` the design spaces a tuning job searches.

Loop nest of the accumulation: ``n_tile (parallel) / m_tile / k (kpack steps) / m_in x
n_vec (unrolled) / intrinsic (rows x lanes x kpack)``. The k loop is outside the unrolled
register tile so that LLVM keeps the ``m_tile / rows * n_vectors`` accumulator vectors in
registers for the whole reduction (their addresses do not change with k); with k inside,
they go through memory every step.
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from intvit.schedules.gemm_knobs import (
    LAYOUT_ANNOTATION,
    ROW_CHUNKS,
    Epilogue,
    GemmFacts,
    GemmKnobs,
    GemmLayout,
    Split,
    legal_layouts,
)
from intvit.topi.dense_packed import COLUMN_SUMS, NARROW_TILES, PACKED_W
from intvit.topi.gemm_kernel import GemmKernel

PACKED_ACC = "_packed_acc"
MIN_PARALLEL_MACS = 1 << 20
#: Relax ops name the PrimFuncs of packed GEMMs with this in their name.
PACKED_FUNC = "_packed"


def gemm_facts(sch: s_tir.Schedule, kernel: GemmKernel, parallel: bool) -> GemmFacts:
    """What decides the layouts a packed GEMM (unscheduled, from :func:`dense_packed` or
    :func:`batch_matmul_packed`) may take (:func:`legal_layouts`)."""
    blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
    names = [sch.get(b).name_hint for b in blocks]
    acc = next(i for i, n in enumerate(names) if n.endswith(PACKED_ACC))
    extents = [int(sch.get(lp).extent) for lp in sch.get_loops(blocks[acc])]
    *batch, m, n, _, _, k = extents
    macs = math.prod(extents)
    tileable = False
    if acc + 1 < len(names):
        *rows, columns = (int(sch.get(lp).extent) for lp in sch.get_loops(blocks[-1]))
        tileable = columns == n * kernel.lanes and (bool(batch) or sum(r > 1 for r in rows) < 2)
    return GemmFacts(
        grouped=bool(batch),
        column_sums=any(name.endswith(COLUMN_SUMS) for name in names),
        tileable=tileable,
        row_blocks=m,
        column_blocks=n,
        k_steps=k // kernel.kpack,
        # Small GEMMs (the digits models: ~70k MACs) lose more to the thread pool than they
        # gain; DeiT's (~20M MACs) gain: measured 28 vs 41 ms for DeiT-tiny on 2 cores.
        parallel=parallel and macs >= MIN_PARALLEL_MACS,
    )


def default_knobs(facts: GemmFacts, kernel: GemmKernel) -> GemmKnobs:
    """The hand-chosen schedule, one point of the tuned space: ``kernel``'s register tile;
    parallel over column tiles, unless they are too few to share evenly, as in the first
    factor of a low-rank linear (``N = r``: 48 columns are 3 tiles, two cores ran them as 2 +
    1), then over ``ROW_CHUNKS`` chunks of rows (``dense_packed`` pads the rows to them,
    each chunk widening its own copy of the weight panels); the epilogue per column tile
    where that is legal, else after the accumulation."""
    layouts = legal_layouts(facts)
    row_tiles = facts.row_blocks // (kernel.m_tile // kernel.rows)
    narrow = facts.column_blocks // kernel.n_vectors < NARROW_TILES
    split = Split.COLUMNS
    if facts.parallel and not facts.grouped and narrow and row_tiles % ROW_CHUNKS == 0:
        split = Split.ROWS
    # the epilogue per column tile where legal, else after the accumulation: the epilogue on
    # the register tile is a tuned choice only (see _epilogue_on_registers)
    candidates = [
        lay for lay in layouts if lay.split is split and lay.epilogue != Epilogue.REGISTER
    ]
    return GemmKnobs(candidates[0], kernel.m_tile, kernel.n_vectors)


def max_k_block(facts: GemmFacts) -> int:
    """The largest K block (in ``kpack`` steps) a K-blocked layout samples: half of K, so
    that K is always at least two blocks."""
    return facts.k_steps // 2


def tile_factors(extent: int, most: int) -> list[int]:
    """The factors a perfect tile of ``extent`` may take, at most ``most``: its divisors."""
    return [d for d in range(1, most + 1) if extent % d == 0]


def max_tile(kernel: GemmKernel) -> tuple[int, int]:
    """The largest register tile a tuning job samples: twice the hand-chosen one's row
    blocks and vectors (the target's register file bounds what is fast, not what is exact;
    a tile that spills measures slow)."""
    return 2 * (kernel.m_tile // kernel.rows), 2 * kernel.n_vectors


def knob_schedule(
    func: tirx.PrimFunc, kernel: GemmKernel, parallel: bool = True, knobs: GemmKnobs | None = None
) -> s_tir.Schedule:
    """The schedule, with its trace, of the packed GEMM ``func`` (from :func:`dense_packed`)
    with ``knobs`` (default: :func:`default_knobs`): the same instructions as its design
    space (:func:`packed_gemm_space`) with the sampled tile decided, so a tuning database can
    replay it and the search mutate it. With ``parallel`` the operand packing and the
    epilogue are spread over the cores too."""
    sch = s_tir.Schedule(func)
    facts = gemm_facts(sch, kernel, parallel)
    knobs = knobs or default_knobs(facts, kernel)
    if knobs.layout not in legal_layouts(facts):
        raise ValueError(f"{kernel.name}: layout {knobs.layout} is not legal for this GEMM")
    if knobs.layout.k_blocked != (knobs.k_block is not None):
        raise ValueError(f"{kernel.name}: knobs {knobs} give a K block iff K is blocked")
    tile = (knobs.m_tile, knobs.n_vectors, knobs.k_block)
    apply_packed_gemm(sch, kernel, facts, knobs.layout, tile)
    return sch


def schedule_packed_gemm(
    func: tirx.PrimFunc,
    kernel: GemmKernel,
    parallel: bool = True,
    knobs: GemmKnobs | None = None,
) -> tirx.PrimFunc:
    """``func`` scheduled by :func:`knob_schedule`, marked scheduled."""
    sch = knob_schedule(func, kernel, parallel, knobs)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def default_gemm_schedule(
    func: tirx.PrimFunc, kernel: GemmKernel, parallel: bool = True
) -> s_tir.Schedule:
    """:func:`knob_schedule` with the default knobs (what a tuning job measures first)."""
    return knob_schedule(func, kernel, parallel)


def knob_space(func: tirx.PrimFunc, kernel: GemmKernel, parallel: bool = True) -> list[GemmKnobs]:
    """Every point of a packed GEMM's tuned space: each legal layout with each register
    tile whose row blocks divide a chunk's (or all) row blocks and whose vectors divide the
    column blocks, both at most :func:`max_tile`, and for a K-blocked layout each K block
    that divides K's steps, at most :func:`max_k_block`."""
    facts = gemm_facts(s_tir.Schedule(func), kernel, parallel)
    most_rows, most_vectors = max_tile(kernel)
    vectors = tile_factors(facts.column_blocks, most_vectors)
    k_blocks = tile_factors(facts.k_steps, max_k_block(facts))
    space = []
    for layout in legal_layouts(facts):
        blocks = facts.row_blocks // layout.row_chunks
        rows = tile_factors(blocks, most_rows)
        ks = k_blocks if layout.k_blocked else [None]
        space += [
            GemmKnobs(layout, r * kernel.rows, v, kb) for r in rows for v in vectors for kb in ks
        ]
    return space


def packed_gemm_space(kernel: GemmKernel, parallel: bool):
    """MetaSchedule's design spaces of a packed GEMM for ``kernel``: one schedule per legal
    layout, its register tile sampled (``ScheduleFn``'s ``[Schedule] -> list[Schedule]``)."""

    def spaces(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        facts = gemm_facts(sch, kernel, parallel)
        out = []
        for layout in legal_layouts(facts):
            space = sch.copy()
            apply_packed_gemm(space, kernel, facts, layout, None)
            out.append(space)
        return out

    return spaces


def sampled_split(sch: s_tir.Schedule, loop, blocks: int | None, most: int):
    """``loop`` split in two by a sampled perfect tile, its inner factor at most ``most``
    (``blocks``: that decision instead of a sampled one)."""
    decision = None
    if blocks is not None:
        decision = [int(sch.get(loop).extent) // blocks, blocks]
    factors = sch.sample_perfect_tile(loop, n=2, max_innermost_factor=most, decision=decision)
    return sch.split(loop, factors)


def apply_packed_gemm(
    sch: s_tir.Schedule,
    kernel: GemmKernel,
    facts: GemmFacts,
    layout: GemmLayout,
    tile: tuple[int, int, int | None] | None,
) -> None:
    """Schedule the packed GEMM in ``sch`` with ``layout`` and the register ``tile`` (rows,
    vectors, and a K-blocked layout's K block in ``kpack`` steps; None: sampled, for a
    tuning job's design space)."""
    root = sch.get_sblock("root")
    blocks = list(sch.get_child_blocks(root))
    # a batch_matmul's column sums (an offset operand's compensation) stay at the top level;
    # the other stages are the packing, the accumulation and the epilogue
    blocks = [b for b in blocks if not sch.get(b).name_hint.endswith(COLUMN_SUMS)]
    names = [sch.get(b).name_hint for b in blocks]
    acc = next(i for i, n in enumerate(names) if n.endswith(PACKED_ACC))
    block = blocks[acc]
    most_rows, most_vectors = max_tile(kernel)
    row_blocks, vectors, k_block = (
        (None, None, None) if tile is None else (tile[0] // kernel.rows, tile[1], tile[2])
    )
    # acc[..., M/rows, N/lanes, rows, lanes] (see dense_packed): the micro-kernel covers
    # the (rows, lanes, kpack) block.
    *batch, m, n, r, lane, k = sch.get_loops(block)
    chunk = None
    if layout.split is not Split.COLUMNS:  # row chunks outside the column tiles
        chunk, m = sch.split(m, [layout.row_chunks, None])
    mo, mi = sampled_split(sch, m, row_blocks, most_rows)
    no, nv = sampled_split(sch, n, vectors, most_vectors)
    ko, ki = sch.split(k, [None, kernel.kpack])
    kb = None  # K-blocked: each K block of a column tile swept over all its row tiles
    if layout.k_blocked:
        kb, ko = sampled_split(sch, ko, k_block, max_k_block(facts))
    column_loops = [no, *([kb] if kb else [])]
    sch.reorder(*batch, *([chunk] if chunk else []), *column_loops, mo, ko, mi, nv, r, lane, ki)
    if batch:  # batched (attention): one parallel loop over groups and column tiles
        no = sch.fuse(*batch, no)
    if layout.split is Split.BOTH:
        no = sch.fuse(chunk, no)
    _weight_panel_at(sch, blocks, names, kb or no)
    # the accumulators in a buffer of one register tile (see register_epilogue), or under
    # K blocking of one column tile, complete only after its last K block
    writeback = sch.cache_write(block, 0, "global")
    sch.reverse_compute_at(writeback, no if kb else mo, preserve_unit_loops=True)
    if layout.epilogue is Epilogue.REGISTER:
        _epilogue_on_registers(sch, _inline_epilogue(sch, names, acc), writeback, mo, kernel)
    else:
        sch.vectorize(sch.get_loops(writeback)[-1])
        if layout.epilogue is Epilogue.COLUMN:
            column_epilogue(sch, _inline_epilogue(sch, names, acc), no)
    if facts.parallel:  # before tensorize: parallel needs the block's affine bindings
        sch.parallel(chunk if layout.split is Split.ROWS else no)
    sch.decompose_reduction(block, kb or ko)
    # one row: the unit row loop stays outside (see intrinsics._dot_desc)
    sch.tensorize(r if kernel.rows > 1 else lane, kernel.intrin)
    sch.unroll(mi)
    sch.unroll(nv)
    if facts.parallel:
        _parallel_around_gemm(sch, names, epilogue=layout.epilogue is Epilogue.TOP)
    # What a tuning record chose, last: annotating the root block first and then splitting
    # wrote the splits into the unscheduled function too (TVM 0.27's copy-on-write), which
    # is the tuning task's workload.
    sch.annotate(sch.get_sblock("root"), LAYOUT_ANNOTATION, str(layout))


def _weight_panel_at(sch: s_tir.Schedule, blocks, names: list[str], column_tile) -> None:
    """Compute the weight operand's widening (int8 -> the kernel's operand dtype) or packing
    (batch_matmul's runtime ``b``) per column tile, under ``column_tile``: one panel (``K x
    lanes * n_vectors``, 12 KiB for K = 384) made just before the row tiles that reuse it
    from L1, by the thread that owns the tile. Constant weights stay int8 in the library and
    in memory (DeiT-small: 21 instead of 42 MiB of packed weights); DeiT-small's fc1 and the
    whole model measured the same as with int16 storage, within this host's noise."""
    for block, name in zip(blocks, names, strict=True):
        if not name.endswith(PACKED_W):
            continue
        sch.compute_at(block, column_tile, preserve_unit_loops=True)
        loops = sch.get_loops(block)
        tile = sch.get(column_tile)
        inner = loops[1 + next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(tile)) :]
        if len(inner) >= 2:
            sch.vectorize(sch.fuse(*inner[-2:]))  # lanes x kpack: contiguous in both layouts


def epilogue_inputs(sch: s_tir.Schedule, names: list[str], acc: int) -> set[str]:
    """The function's buffers that the epilogue stages after ``names[acc]`` read, besides
    what the function computes itself (the accumulators and the intermediate stages)."""
    blocks = [sch.get(sch.get_sblock(n)) for n in names]
    made = {w.source.name for b in blocks for w in b.writes}
    read = {r.source.name for b in blocks[acc + 1 :] for r in b.reads}
    return read - made


def _inline_epilogue(sch: s_tir.Schedule, names: list[str], acc: int):
    """The last epilogue stage after ``names[acc]``, the intermediate ones inlined into it."""
    epilogue = names[acc + 1 :]
    for name in epilogue[:-1]:
        sch.compute_inline(sch.get_sblock(name))
    return sch.get_sblock(epilogue[-1])


def tileable_epilogue(sch: s_tir.Schedule, names: list[str], acc: int, n_tile: int, grouped: bool):
    """The last epilogue stage after ``names[acc]``, the intermediate ones inlined into it,
    where the epilogue can follow the accumulation tile by tile: the output's columns a whole
    number of ``n_tile``-column tiles and its rows one axis (or ``grouped``; see
    :func:`column_epilogue` for why). None, and nothing changed, otherwise."""
    epilogue = names[acc + 1 :]
    if not epilogue:
        return None
    last = sch.get_sblock(epilogue[-1])
    *rows, columns = (int(sch.get(lp).extent) for lp in sch.get_loops(last))
    if columns % n_tile or (not grouped and sum(r > 1 for r in rows) > 1):
        return None
    return _inline_epilogue(sch, names, acc)


def register_epilogue(
    sch: s_tir.Schedule,
    names: list[str],
    acc: int,
    writeback,
    row_tile,
    kernel: GemmKernel,
    grouped: bool,
) -> bool:
    """:func:`_epilogue_on_registers` where it is legal (the epilogue reads at most one
    input besides the accumulators, and :func:`tileable_epilogue` for ``kernel``'s tile);
    False otherwise, and nothing is changed."""
    if len(epilogue_inputs(sch, names, acc)) > 1:
        return False
    last = tileable_epilogue(sch, names, acc, kernel.lanes * kernel.n_vectors, grouped)
    if last is None:
        return False
    _epilogue_on_registers(sch, last, writeback, row_tile, kernel)
    return True


def _epilogue_on_registers(sch: s_tir.Schedule, last, writeback, row_tile, kernel: GemmKernel):
    """Compute the epilogue (its last stage ``last``, the others inlined) per register
    tile, under ``row_tile``, on the accumulators where the micro-kernel leaves them:
    ``writeback`` (the accumulation's ``cache_write``, a buffer of one register tile, 512
    bytes) is inlined into the epilogue, and TVM allocates a buffer that small on the stack,
    which LLVM then keeps in registers. So the accumulators start as ``vpxor`` instead of
    zero stores reloaded, and end as bias adds and stores to the output instead of stores to
    a workspace read back: measured (2 threads, 197 rows, ``avx-vnni``) 197x192x576 70 -> 61
    us, 197x48x576 25 -> 20 us, and no workspace allocation per column tile.

    The tile's columns are unrolled in vectors of the kernel's lanes (one accumulator each)
    and its rows unrolled, rows past the output's predicated. Legal only where the output's
    columns are a whole number of tiles and its rows one axis (see :func:`column_epilogue`
    for why). Per-channel requantization tables and a residual input, read per tile, made
    DeiT-tiny's qkv 0.97 -> 2.2 ms and fc1 1.18 -> 1.6 ms (LLVM spills the accumulators for
    them): the default layout gives those the column-tile epilogue, on accumulators that
    still start in registers (:func:`default_knobs`)."""
    sch.reverse_compute_at(last, row_tile, preserve_unit_loops=True)
    sch.compute_inline(writeback)
    *_, row_loop, col_loop = sch.get_loops(last)
    vec, lane = sch.split(col_loop, [None, kernel.lanes])
    sch.vectorize(lane)
    sch.unroll(vec)
    sch.unroll(row_loop)


def column_epilogue(sch: s_tir.Schedule, last, column_tile) -> None:
    """Compute the epilogue (bias, requantization, residual add: its last stage ``last``,
    the others inlined) per column tile, under ``column_tile``, right after the tile's
    accumulation: its accumulators (``M x lanes * n_vectors`` int32, 12.6 KiB for 197 rows)
    are read back from L1 instead of from a whole-output buffer in L2/L3. Measured on
    DeiT-small's GEMMs (2 threads): fc1 0.837 -> 0.812 ms, qkv 0.623 -> 0.611, proj 0.236 ->
    0.229, attention's ``attn @ v`` 0.134 -> 0.127.

    Legal only where the output's columns are a whole number of tiles: a partial last tile
    puts a predicate in the vectorized loop, which measured 5x slower on ``q @ k^T`` (197
    columns). Nor for a dense (not grouped) GEMM whose rows span more than one axis, such as
    a batch of 2 x 197 tokens (flattened to ``b * 197 + t`` in the accumulators, see
    :func:`~intvit.topi.dense_packed.dense_packed`): there TVM 0.27's ``reverse_compute_at``
    infers a wrong row range when the padded accumulator rows exceed the output's, and the
    result is silently wrong (seen for 3 x 17 and 2 x 197 rows; ``tests/test_gemm_tune.py``
    sweeps such shapes). Attention's grouped GEMMs index their groups directly and are not
    affected."""
    sch.reverse_compute_at(last, column_tile, preserve_unit_loops=True)
    sch.vectorize(sch.get_loops(last)[-1])  # the tile's columns (lanes * n_vectors)


def _parallel_around_gemm(sch: s_tir.Schedule, names: list[str], epilogue: bool = True) -> None:
    """Parallelize what surrounds the accumulation: the packing copies before it (over their
    groups and row blocks; the contiguous ``k`` loops stay inside, a finer split measured 1.6x
    slower) and the elementwise epilogue after it (bias, requantization: every stage nested
    under the output's row loop, one parallel region; with ``epilogue`` False it is already
    inside the parallel column tiles, see :func:`column_epilogue`). Without this, one core packs
    and requantizes while the others wait: DeiT-tiny's GEMMs on 2 cores, 5-15% per kernel."""
    acc = next(i for i, n in enumerate(names) if n.endswith(PACKED_ACC))
    for name in names[:acc]:  # [..groups, row blocks, k blocks, rows, kpack]
        if name.endswith(PACKED_W):  # computed per column tile (_weight_panel_at)
            continue
        loops = sch.get_loops(sch.get_sblock(name))
        sch.parallel(sch.fuse(*loops[:-3]) if len(loops) > 4 else loops[0])
    if epilogue:
        parallel_epilogue(sch, names, acc)


def parallel_epilogue(sch: s_tir.Schedule, names: list[str], acc: int, parallel=True) -> None:
    """Run the epilogue stages after ``names[acc]`` in one parallel region over the output's
    rows (each stage nested under the last one's row loop; serial without ``parallel``)."""
    stages = [sch.get_sblock(n) for n in names[acc + 1 :]]
    if not stages:
        return
    loops = sch.get_loops(stages[-1])
    if len(loops) < 2:
        return
    outer = sch.fuse(*loops[:-1])
    for block in reversed(stages[:-1]):
        sch.compute_at(block, outer, preserve_unit_loops=True)
    if parallel:
        sch.parallel(outer)


def packed_gemm_workload(
    x_shape: tuple[int, ...], x_dtype: str, n: int, kernel: GemmKernel
) -> tirx.PrimFunc:
    """A standalone unscheduled packed GEMM ``main(x, wp, bias, out)``: ``x [..., K]`` int8
    or uint8, ``wp`` from :func:`~intvit.topi.dense_packed.pack_weights`, ``bias`` from
    :func:`~intvit.topi.dense_packed.pack_bias` (int32, both padded to the tile), ``out [...,
    N]`` int32."""
    from tvm import te

    from intvit.topi.dense_packed import dense_packed, padded_shape

    n_pad, k_pad = padded_shape(n, int(x_shape[-1]), kernel)
    x = te.placeholder(x_shape, x_dtype, name="x")
    wp = te.placeholder(
        (n_pad // kernel.lanes, k_pad // kernel.kpack, kernel.lanes, kernel.kpack),
        "int8",
        name="wp",
    )
    bias = te.placeholder((n_pad,), "int32", name="bias")
    return te.create_prim_func([x, wp, bias, dense_packed(x, wp, bias, kernel, n_out=n)])


def packed_gemm_func(
    x_shape: tuple[int, ...],
    x_dtype: str,
    n: int,
    kernel: GemmKernel,
    parallel: bool = True,
) -> tirx.PrimFunc:
    """:func:`packed_gemm_workload` scheduled with the default knobs."""
    return schedule_packed_gemm(packed_gemm_workload(x_shape, x_dtype, n, kernel), kernel, parallel)

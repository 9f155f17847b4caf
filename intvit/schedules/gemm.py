"""Schedules for the packed int8 GEMM: register-blocked and tensorized with a dot-product
intrinsic, weights streamed from L1 across row tiles, epilogue (bias, requantization) in the
same kernel, parallel over column tiles; where the columns tile exactly, each column tile's
epilogue runs right after its accumulation, on accumulators still in L1.

Loop nest of the accumulation: ``n_tile (parallel) / m_tile / k (kpack steps) / m_in x
n_vec (unrolled) / intrinsic (rows x lanes x kpack)``. The k loop is outside the unrolled
register tile so that LLVM keeps the ``m_tile / rows * n_vectors`` accumulator vectors in
registers for the whole reduction (their addresses do not change with k); with k inside,
they go through memory every step.
"""

from __future__ import annotations

from tvm import s_tir, tirx

from intvit.topi.dense_packed import COLUMN_SUMS, NARROW_ROW_CHUNKS, NARROW_TILES, PACKED_W
from intvit.topi.gemm_kernel import GemmKernel

PACKED_ACC = "_packed_acc"
MIN_PARALLEL_MACS = 1 << 20
#: Relax ops name the PrimFuncs of packed GEMMs with this in their name.
PACKED_FUNC = "_packed"


def _row_split(column_tiles: int, row_tiles: int) -> int:
    """How many row chunks a dense GEMM's parallel loop takes, outside its column tiles: 1
    (parallel over column tiles) unless the column tiles are too few to share evenly, as in
    the first factor of a low-rank linear (``N = r``: 48 columns are 3 tiles, two cores ran
    them as 2 + 1). Then ``NARROW_ROW_CHUNKS`` chunks of rows (``dense_packed`` pads the rows
    to them), each widening its own copy of the weight panels."""
    if column_tiles >= NARROW_TILES or row_tiles % NARROW_ROW_CHUNKS:
        return 1
    return NARROW_ROW_CHUNKS


def schedule_packed_gemm(func: tirx.PrimFunc, kernel: GemmKernel, parallel: bool = True):
    """Schedule every packed GEMM block of ``func`` (from :func:`dense_packed`), and with
    ``parallel`` spread the operand packing and the epilogue over the cores too."""
    sch = s_tir.Schedule(func)
    root = sch.get_sblock("root")
    blocks = list(sch.get_child_blocks(root))
    # a batch_matmul's column sums (an offset operand's compensation) stay at the top level;
    # the other stages are the packing, the accumulation and the epilogue
    sums = [b for b in blocks if sch.get(b).name_hint.endswith(COLUMN_SUMS)]
    blocks = [b for b in blocks if b not in sums]
    names = [sch.get(b).name_hint for b in blocks]
    big = False
    for block, name in zip(blocks, names, strict=True):
        if not name.endswith(PACKED_ACC):
            continue
        # acc[..., M/rows, N/lanes, rows, lanes] (see dense_packed): the micro-kernel covers
        # the (rows, lanes, kpack) block.
        *batch, m, n, r, lane, k = sch.get_loops(block)
        mo, mi = sch.split(m, [None, kernel.m_tile // kernel.rows])
        no, nv = sch.split(n, [None, kernel.n_vectors])
        ko, ki = sch.split(k, [None, kernel.kpack])
        sch.reorder(*batch, no, mo, ko, mi, nv, r, lane, ki)
        macs = 1
        for loop in sch.get_loops(block):
            macs *= int(sch.get(loop).extent)
        # Small GEMMs (the digits models: ~70k MACs) lose more to the thread pool than they
        # gain; DeiT's (~20M MACs) gain: measured 28 vs 41 ms for DeiT-tiny on 2 cores.
        big = macs >= MIN_PARALLEL_MACS
        row_split = 1
        if batch:  # batched (attention): one parallel loop over groups and column tiles
            no = sch.fuse(*batch, no)
        elif parallel and big:
            row_split = _row_split(int(sch.get(no).extent), int(sch.get(mo).extent))
        if row_split > 1:  # few column tiles: row chunks outside them, one per core
            chunk, mo = sch.split(mo, [row_split, None])
            sch.reorder(chunk, no)
        _weight_panel_at(sch, blocks, names, no)
        # the register tile's accumulators in a tile-sized buffer (see register_epilogue)
        writeback = sch.cache_write(block, 0, "global")
        sch.reverse_compute_at(writeback, mo, preserve_unit_loops=True)
        # with column sums (computed at the top level: a tiled epilogue would need them
        # under the tile's loop before it moves there, and they only can after) the epilogue
        # stays at the top level too
        tiled_epilogue = not sums and register_epilogue(
            sch, names, names.index(name), writeback, mo, kernel, bool(batch)
        )
        if not tiled_epilogue:
            sch.vectorize(sch.get_loops(writeback)[-1])
            tiled_epilogue = (
                not sums
                and row_split == 1
                and _epilogue_at(
                    sch, names, names.index(name), no, kernel.lanes * kernel.n_vectors, bool(batch)
                )
            )
        if row_split > 1:
            sch.parallel(chunk)
        elif parallel and big and int(sch.get(no).extent) > 1:
            sch.parallel(no)  # before tensorize: parallel needs the block's affine bindings
        sch.decompose_reduction(block, ko)
        # one row: the unit row loop stays outside (see intrinsics._dot_desc)
        sch.tensorize(r if kernel.rows > 1 else lane, kernel.intrin)
        sch.unroll(mi)
        sch.unroll(nv)
    if parallel and big:
        _parallel_around_gemm(sch, names, epilogue=not tiled_epilogue)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


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


def tileable_epilogue(sch: s_tir.Schedule, names: list[str], acc: int, n_tile: int, grouped: bool):
    """The last epilogue stage after ``names[acc]``, the intermediate ones inlined into it,
    where the epilogue can follow the accumulation tile by tile: the output's columns a whole
    number of ``n_tile``-column tiles and its rows one axis (or ``grouped``; see
    :func:`_epilogue_at` for why). None, and nothing changed, otherwise."""
    epilogue = names[acc + 1 :]
    if not epilogue:
        return None
    last = sch.get_sblock(epilogue[-1])
    *rows, columns = (int(sch.get(lp).extent) for lp in sch.get_loops(last))
    if columns % n_tile or (not grouped and sum(r > 1 for r in rows) > 1):
        return None
    for name in epilogue[:-1]:
        sch.compute_inline(sch.get_sblock(name))
    return last


def register_epilogue(
    sch: s_tir.Schedule,
    names: list[str],
    acc: int,
    writeback,
    row_tile,
    kernel: GemmKernel,
    grouped: bool,
) -> bool:
    """Compute the epilogue (every stage after the accumulation ``names[acc]``, the
    intermediate ones inlined) per register tile, under ``row_tile``, on the accumulators
    where the micro-kernel leaves them: ``writeback`` (the accumulation's ``cache_write``, a
    buffer of one register tile, 512 bytes) is inlined into the epilogue, and TVM allocates a
    buffer that small on the stack, which LLVM then keeps in registers. So the accumulators
    start as ``vpxor`` instead of zero stores reloaded, and end as bias adds and stores to
    the output instead of stores to a workspace read back: measured (2 threads, 197 rows,
    ``avx-vnni``) 197x192x576 70 -> 61 us, 197x48x576 25 -> 20 us, and no workspace
    allocation per column tile.

    The tile's columns are unrolled in vectors of the kernel's lanes (one accumulator each)
    and its rows unrolled, rows past the output's predicated. Only where the output's columns
    are a whole number of tiles and its rows one axis (see :func:`_epilogue_at` for why), and
    where the epilogue reads at most one input besides the accumulators (a bias; a per-tensor
    requantization): per-channel requantization tables and a residual input, read per tile,
    made DeiT-tiny's qkv 0.97 -> 2.2 ms and fc1 1.18 -> 1.6 ms (LLVM spills the accumulators
    for them); those keep the column-tile epilogue (:func:`_epilogue_at`), on accumulators
    that still start in registers. False otherwise, and nothing is changed."""
    if len(epilogue_inputs(sch, names, acc)) > 1:
        return False
    last = tileable_epilogue(sch, names, acc, kernel.lanes * kernel.n_vectors, grouped)
    if last is None:
        return False
    sch.reverse_compute_at(last, row_tile, preserve_unit_loops=True)
    sch.compute_inline(writeback)
    *_, row_loop, col_loop = sch.get_loops(last)
    vec, lane = sch.split(col_loop, [None, kernel.lanes])
    sch.vectorize(lane)
    sch.unroll(vec)
    sch.unroll(row_loop)
    return True


def _epilogue_at(
    sch: s_tir.Schedule,
    names: list[str],
    acc: int,
    column_tile,
    n_tile: int,
    grouped: bool,
) -> bool:
    """Compute the epilogue (bias, requantization, residual add: every stage after the
    accumulation ``names[acc]``, the intermediate ones inlined) per column tile, under
    ``column_tile``, right after the tile's accumulation: its accumulators (``M x lanes *
    n_vectors`` int32, 12.6 KiB for 197 rows) are read back from L1 instead of from a
    whole-output buffer in L2/L3. Measured on DeiT-small's GEMMs (2 threads): fc1 0.837 ->
    0.812 ms, qkv 0.623 -> 0.611, proj 0.236 -> 0.229, attention's ``attn @ v`` 0.134 ->
    0.127.

    Only where the output's columns are a whole number of tiles (``n_tile`` columns each;
    False otherwise, and nothing is changed): a partial last tile puts a predicate in the
    vectorized loop, which measured 5x slower on ``q @ k^T`` (197 columns). Nor for a dense
    (not ``grouped``) whose rows span more than one axis, such as a batch of 2 x 197 tokens
    (flattened to ``b * 197 + t`` in the accumulators, see
    :func:`~intvit.topi.dense_packed.dense_packed`): there TVM 0.27's ``reverse_compute_at``
    infers a wrong row range when the padded accumulator rows exceed the output's, and the
    result is silently wrong (seen for 3 x 17 and 2 x 197 rows; ``tests/test_gemm_tune.py``
    sweeps such shapes). Attention's grouped GEMMs index their groups directly and are not
    affected."""
    last = tileable_epilogue(sch, names, acc, n_tile, grouped)
    if last is None:
        return False
    sch.reverse_compute_at(last, column_tile, preserve_unit_loops=True)
    sch.vectorize(sch.get_loops(last)[-1])  # the tile's columns (lanes * n_vectors)
    return True


def _parallel_around_gemm(sch: s_tir.Schedule, names: list[str], epilogue: bool = True) -> None:
    """Parallelize what surrounds the accumulation: the packing copies before it (over their
    groups and row blocks; the contiguous ``k`` loops stay inside, a finer split measured 1.6x
    slower) and the elementwise epilogue after it (bias, requantization: every stage nested
    under the output's row loop, one parallel region; with ``epilogue`` False it is already
    inside the parallel column tiles, see :func:`_epilogue_at`). Without this, one core packs
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


def packed_gemm_func(
    x_shape: tuple[int, ...],
    x_dtype: str,
    n: int,
    kernel: GemmKernel,
    parallel: bool = True,
) -> tirx.PrimFunc:
    """A standalone scheduled packed GEMM ``main(x, wp, bias, out)``: ``x [..., K]`` int8 or
    uint8, ``wp`` from :func:`~intvit.topi.dense_packed.pack_weights`, ``bias`` from
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
    func = te.create_prim_func([x, wp, bias, dense_packed(x, wp, bias, kernel, n_out=n)])
    return schedule_packed_gemm(func, kernel, parallel=parallel)

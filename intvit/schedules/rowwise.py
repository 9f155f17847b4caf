"""A default CPU schedule for elementwise and last-axis (row) kernels.

Row kernels (softmax, LayerNorm, I-ViT GELU) are chains of stages over one row: reductions
(max, sum) and elementwise passes. The schedule nests every stage under the output's fused row
loop (one parallel region, the row stays in cache), parallelizes that loop, and vectorizes the
innermost loop of each elementwise stage. Purely elementwise kernels are fused, split into
vector-width chunks, parallelized and vectorized. Kernels too small for the thread pool
(fewer than ``MIN_PARALLEL_ELEMENTS`` outputs: the digits models') run on one thread with each
stage a loop over all rows. The same schedule serves the integer kernels and their FP32 twins,
so benchmarks compare equal scheduling effort.
"""

from __future__ import annotations

from tvm import s_tir, tirx

from intvit.topi.gelu import CONST_TABLE

#: tirx IterVar types
_DATA_PAR = 0


def _is_spatial(sch: s_tir.Schedule, block) -> bool:
    return all(int(iv.iter_type) == _DATA_PAR for iv in sch.get(block).iter_vars)


def _vectorize_inner(sch: s_tir.Schedule, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    extent = sch.get(loops[-1]).extent
    if not isinstance(extent, tirx.IntImm) or int(extent) < 2:
        return
    n = int(extent)
    if n <= lanes:
        sch.vectorize(loops[-1])
        return
    # Split by the largest divisor <= lanes (no tail to predicate); give up below 4.
    for factor in range(lanes, 3, -1):
        if n % factor == 0:
            _, inner = sch.split(loops[-1], [None, factor])
            sch.vectorize(inner)
            return


#: Row kernels with fewer output elements than this run on one thread: below it, waking the
#: thread pool costs more than the second core saves (see :func:`rowwise_schedule`).
MIN_PARALLEL_ELEMENTS = 1 << 14


def schedule_rowwise(
    func: tirx.PrimFunc, lanes: int = 16, vectorize: bool = False, parallel: bool | None = None
) -> tirx.PrimFunc:
    """Schedule a TE-built kernel for a multicore SIMD CPU; returns the new PrimFunc (see
    :func:`rowwise_schedule`)."""
    return rowwise_schedule(func, lanes, vectorize, parallel).mod["main"]


def _output_elements(sch: s_tir.Schedule, block) -> int:
    n = 1
    for loop in sch.get_loops(block):
        n *= int(sch.get(loop).extent)
    return n


def rowwise_schedule(
    func: tirx.PrimFunc, lanes: int = 16, vectorize: bool = False, parallel: bool | None = None
) -> s_tir.Schedule:
    """The schedule (with its trace, which a tuning database can replay) of a TE-built
    kernel for a multicore SIMD CPU.

    ``vectorize=False`` leaves the contiguous inner loops to LLVM's loop vectorizer, which
    measured faster here than TVM's explicit vectorization for the integer kernels (their
    per-lane variable shifts and int64 products vectorize better in LLVM's cost model).

    ``parallel`` None: parallel over rows when the output has at least
    :data:`MIN_PARALLEL_ELEMENTS` elements, else on one thread with every stage at the root.
    The digits models' row kernels (about 1-2 thousand elements) measured 10-40% faster on
    one thread than woken across two (this host, 2 cores); DeiT-tiny's (38-150 thousand)
    twice as fast on two.
    """
    sch = s_tir.Schedule(func)
    root = sch.get_sblock("root")
    # Constant-table stages (the lut GELU's) run once at the root, not once per row.
    blocks = [b for b in sch.get_child_blocks(root) if CONST_TABLE not in sch.get(b).annotations]
    final = blocks[-1]
    loops = sch.get_loops(final)
    if parallel is None:
        parallel = _output_elements(sch, final) >= MIN_PARALLEL_ELEMENTS
    if len(blocks) == 1 and _is_spatial(sch, final):
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        extent = int(sch.get(fused).extent)
        if extent >= 2 * lanes and extent % lanes == 0:
            outer, inner = sch.split(fused, [None, lanes * 8])
            if parallel:
                sch.parallel(outer)
            if vectorize:
                sch.vectorize(inner)
        elif extent >= 2 and parallel:
            sch.parallel(fused)
        return sch
    # On one thread every stage stays a loop over all rows at the root: the per-row scalar
    # chains (LayerNorm's Newton square root and divisions, ~250 cycles a row) of different
    # rows are then independent and overlap in the core, where nested under the row loop
    # each row waited for the last. Digits ViT (17 x 64 rows), this host: LayerNorm 1.8 ->
    # 1.2 us a call, against 1.2 us for the FP32 build's.
    if len(loops) >= 2 and parallel:
        outer = sch.fuse(*loops[:-1])
        for block in reversed(blocks[:-1]):
            sch.compute_at(block, outer, preserve_unit_loops=True)
        if int(sch.get(outer).extent) > 1 and parallel:
            sch.parallel(outer)
    for block in blocks if vectorize else ():
        if _is_spatial(sch, block):
            _vectorize_inner(sch, block, lanes)
    return sch

"""The static analysis of the micro-kernels' inner loops (benchmarks/arm_static.py): it finds
the accumulation loop in real compiled assembly, and llvm-mca and the resource bound read it.
Needs llvm-mca-19 (`make system-deps`)."""

from __future__ import annotations

import shutil

import pytest

from intvit.analysis.cores import core_model
from intvit.analysis.inner_loop import (
    StaticAnalysisError,
    accumulation_loop,
    analyse_kernel,
    innermost_loops,
    resource_bound,
)
from intvit.deploy.targets import get_preset
from intvit.schedules.intrinsics import KERNELS

needs_mca = pytest.mark.skipif(
    shutil.which("llvm-mca-19") is None, reason="llvm-mca-19 missing (make system-deps)"
)

NESTED = """\
f:
.LBB0_1:
\tmov\tx1, #0
.LBB0_2:
\tsdot\tv0.4s, v1.16b, v2.4b[0]
\tldr\tq1, [x0], #16   // a load
\tsubs\tx1, x1, #1
\tb.ne\t.LBB0_2
\tadd\tx2, x2, #1
\tcbnz\tx2, .LBB0_1
\tb\t.LBB0_9
.LBB0_9:
\tret
"""


def test_innermost_loop_of_nested_loops():
    loops = innermost_loops(NESTED)
    assert loops == [
        [
            "\tsdot\tv0.4s, v1.16b, v2.4b[0]",
            "\tldr\tq1, [x0], #16",
            "\tsubs\tx1, x1, #1",
            "\tb.ne\t.LBB0_2",
        ]
    ]
    assert accumulation_loop(NESTED, "sdot") == loops[0]
    with pytest.raises(StaticAnalysisError, match="no inner loop with 'smmla'"):
        accumulation_loop(NESTED, "smmla")


def test_resource_bound_counts_pipes():
    loop = innermost_loops(NESTED)[0]
    cycles, limit = resource_bound(loop, core_model("neoverse-n1"))
    # 1 sdot on 2 pipes, 1 load on 2 ports, 4 instructions at 4 per cycle: issue-bound
    assert (cycles, limit) == (1.0, "issue width")


@needs_mca
def test_static_analysis_of_the_graviton_sdot_kernel():
    """The preset's by-element sdot loop on Neoverse N1: 24 sdot (8 rows x 3 vectors of 4
    columns, 4 products each) per iteration, within 85% of the core's 32 MAC/cycle in both
    analyses; the broadcast form it replaced is ld1r-bound (ld1r takes a vector pipe)."""
    preset = get_preset("graviton")
    lane = analyse_kernel(preset, KERNELS["arm-sdot-lane"], "tiny_qkv", 197, 192, 576)
    assert lane.macs_per_iter == 24 * 16 and lane.peak_macs_per_cycle == 32
    assert lane.fraction_of_peak >= 0.85 and lane.fraction_of_peak_bound >= 0.85
    broadcast = analyse_kernel(preset, KERNELS["arm-sdot"], "tiny_qkv", 197, 192, 576)
    assert broadcast.bound_limit == "vector pipes"
    assert broadcast.fraction_of_peak < lane.fraction_of_peak


# --- row kernels: the whole compute function, loops weighted by their trip counts ---------

ROW_ASM = """\
main_compute_:
\tmov\tx9, xzr
\tmov\tw8, #8
.LBB3_1:
\tldr\tq0, [x0, x9]
\tadd\tx9, x9, #16
\tcmp\tx9, #768
\tadd\tv1.4s, v1.4s, v0.4s
\tb.ne\t.LBB3_1
.LBB3_2:
\tmov\tx10, #64
.LBB3_3:
\tstr\tq1, [x1], #16
\tsubs\tx10, x10, #16
\tb.ne\t.LBB3_3
\tsubs\tw8, w8, #1
\tb.ne\t.LBB3_2
.LBB3_4:
\tstr\tq1, [x2, x9]
\tsubs\tx9, x9, #32
\tb.ne\t.LBB3_4
\tret
.LBB3_9:
\tmov\tw0, #-1
\tb\t.LBB3_4
.Lfunc_end3:
"""

X86_EXIT_IN_MIDDLE = """\
main_compute_:
\tmovl\t$8, %eax
.LBB3_1:
\tvaddss\t-4(%rdi,%rax,4), %xmm0, %xmm0
\tcmpq\t$192, %rax
\tje\t.LBB3_4
\tvaddss\t(%rdi,%rax,4), %xmm0, %xmm0
\taddq\t$8, %rax
\tjmp\t.LBB3_1
.LBB3_4:
\tretq
.Lfunc_end3:
"""


def test_row_regions_read_trip_counts_and_nesting():
    """Count-up and count-down inductions, a nested loop run once per outer pass, a counter
    reused from the loop before (768 on exit, counted down by 32), and a branch back into a
    returning block that is no loop."""
    from intvit.analysis.row_static import compute_function, regions

    found = {r.label: r for r in regions(compute_function(ROW_ASM))}
    assert set(found) == {"<function>", ".LBB3_1", ".LBB3_2", ".LBB3_3", ".LBB3_4"}
    assert (found[".LBB3_1"].trips, found[".LBB3_1"].executions) == (48, 48)
    assert (found[".LBB3_2"].trips, found[".LBB3_2"].executions) == (8, 8)
    assert (found[".LBB3_3"].trips, found[".LBB3_3"].executions) == (4, 32)
    assert (found[".LBB3_4"].trips, found[".LBB3_4"].executions) == (24, 24)
    # the outer loop's own instructions exclude its inner loop's
    assert not any("str" in x for x in found[".LBB3_2"].instructions)


def test_row_regions_x86_exit_in_the_middle():
    from intvit.analysis.row_static import compute_function, regions

    (loop,) = [r for r in regions(compute_function(X86_EXIT_IN_MIDDLE)) if r.label != "<function>"]
    assert loop.trips == 24  # rax 8, 16, ..., 192: 24 passes through the test


#: LLVM's scalable-vector code for a 192-wide int32 row sum (Neoverse V1, simplified from a
#: compiled LayerNorm): a vector-length check that branches to a scalar fallback, a main loop
#: stepped by ``cnth`` up to ``(cnth - 1) & 191 ^ 191``, a scalar tail from where it stopped,
#: and a predicated ``whilelo`` loop.
SVE_ROW_ASM = """\
main_compute_:
\trdvl\tx9, #1
\tlsr\tx8, x9, #4
\tcmp\tx8, #3
\tb.hi\t.LBB3_9
\tcnth\tx13
\tmov\tw14, #191
\tmov\tx12, xzr
\tsub\tw11, w13, #1
\tand\tx10, x11, x14
\teor\tx11, x10, x14
.LBB3_2:
\tld1w\t{ z2.s }, p0/z, [x0, x12, lsl #2]
\tadd\tx12, x12, x13
\tcmp\tx11, x12
\tadd\tz1.s, z2.s, z1.s
\tb.ne\t.LBB3_2
\tcbz\tx10, .LBB3_5
\tlsl\tx12, x11, #2
.LBB3_4:
\tldr\tw15, [x0, x12]
\tadd\tx12, x12, #4
\tcmp\tx12, #764
\tadd\tw16, w16, w15
\tb.ne\t.LBB3_4
.LBB3_5:
\tcntw\tx10
\tneg\tx13, x10
\tadd\tx13, x13, #192
\tcmp\tx8, #48
\tcsel\tx8, x13, xzr, lo
\tmov\tx9, xzr
\twhilelo\tp0.s, xzr, x13
.LBB3_6:
\tst1w\t{ z1.s }, p0, [x1, x9, lsl #2]
\twhilelo\tp0.s, x9, x8
\tadd\tx9, x9, x10
\tb.mi\t.LBB3_6
\tret
.LBB3_9:
\tmov\tx12, xzr
.LBB3_10:
\tldr\tw15, [x0, x12]
\tadd\tx12, x12, #4
\tcmp\tx12, #768
\tb.ne\t.LBB3_10
\tret
.Lfunc_end3:
"""


def test_row_regions_with_the_sve_vector_length():
    """With Neoverse V1's 256-bit vectors: ``cnth`` 16, so the main loop runs 191 // 16 = 11 times
    up to 176 and the scalar tail 15 more (176 * 4 to 764 bytes); the vector-length check (2
    granules of 128 bits, not above 3) does not branch, so the scalar fallback is unreachable (0
    runs, its instructions not counted); the ``whilelo`` loop runs while its index before the
    step is below 192 - 8, 24 times. Without a vector length, the loops are not understood (and
    the analysis fails loudly rather than guess)."""
    from intvit.analysis.row_static import compute_function, regions

    lines = compute_function(SVE_ROW_ASM)
    found = {r.label: r for r in regions(lines, vector_bytes=32)}
    runs = {label: r.executions for label, r in found.items() if label != "<function>"}
    assert runs == {".LBB3_2": 11, ".LBB3_4": 15, ".LBB3_6": 24, ".LBB3_10": 0}
    assert not found[".LBB3_10"].instructions
    # 512-bit vectors (4 granules of 128 bits, above 3): the check branches to the scalar
    # fallback instead
    wide = {r.label: r.executions for r in regions(lines, vector_bytes=64)}
    assert wide[".LBB3_10"] == 192 and wide[".LBB3_2"] == 0
    unknown = {r.label: r.executions for r in regions(lines, vector_bytes=0)}
    assert unknown[".LBB3_2"] is None and unknown[".LBB3_6"] is None


def test_row_analysis_fails_loudly_without_its_function():
    from intvit.analysis.row_static import compute_function

    with pytest.raises(StaticAnalysisError, match="no function 'main_compute_'"):
        compute_function(NESTED)


@needs_mca
@pytest.mark.parametrize("variant", ["edge", "ilayernorm"])
@pytest.mark.parametrize("preset", ["graviton", "graviton3"])
def test_static_analysis_of_a_graviton_layernorm_row(variant, preset):
    """The default LayerNorm on one DeiT-small row (384 channels) for Neoverse N1 and for Neoverse
    V1 (SVE loops, read with its 256-bit vector length): every loop understood, and no workspace
    allocation (a per-row buffer of 384 int32/int64 passed TVM's 1 KiB stack limit and cost an
    allocation per row)."""
    import numpy as np
    from tvm import te

    from intvit.analysis.row_static import analyse_row_kernel
    from intvit.bench.kernels import int_kernel
    from intvit.schedules.rowwise import schedule_rowwise

    args, _, vec = int_kernel("layernorm", (1, 384), variant, np.random.default_rng(0))
    func = schedule_rowwise(te.create_prim_func(list(args)), vectorize=vec)
    a = analyse_row_kernel(get_preset(preset), func, variant, "small_layernorm", 384)
    assert not a.unresolved and any(r.label != "<function>" for r in a.regions)
    assert "__TVMBackendAllocWorkspace" not in a.calls
    assert 0.5 < a.cycles_per_element < 50

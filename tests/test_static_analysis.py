"""The static analysis of the micro-kernels' inner loops (benchmarks/arm_static.py): it finds
the accumulation loop in real compiled assembly, and llvm-mca and the resource bound read it.
Needs llvm-mca-19 (`make system-deps`)."""

from __future__ import annotations

import shutil

import pytest

from intvit.deploy.cores import core_model
from intvit.deploy.inner_loop import (
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
    from intvit.deploy.row_static import compute_function, regions

    found = {r.label: r for r in regions(compute_function(ROW_ASM))}
    assert set(found) == {"<function>", ".LBB3_1", ".LBB3_2", ".LBB3_3", ".LBB3_4"}
    assert (found[".LBB3_1"].trips, found[".LBB3_1"].executions) == (48, 48)
    assert (found[".LBB3_2"].trips, found[".LBB3_2"].executions) == (8, 8)
    assert (found[".LBB3_3"].trips, found[".LBB3_3"].executions) == (4, 32)
    assert (found[".LBB3_4"].trips, found[".LBB3_4"].executions) == (24, 24)
    # the outer loop's own instructions exclude its inner loop's
    assert not any("str" in x for x in found[".LBB3_2"].instructions)


def test_row_regions_x86_exit_in_the_middle():
    from intvit.deploy.row_static import compute_function, regions

    (loop,) = [r for r in regions(compute_function(X86_EXIT_IN_MIDDLE)) if r.label != "<function>"]
    assert loop.trips == 24  # rax 8, 16, ..., 192: 24 passes through the test


def test_row_analysis_fails_loudly_without_its_function():
    from intvit.deploy.row_static import compute_function

    with pytest.raises(StaticAnalysisError, match="no function 'main_compute_'"):
        compute_function(NESTED)


@needs_mca
@pytest.mark.parametrize("variant", ["edge", "ilayernorm"])
def test_static_analysis_of_a_graviton_layernorm_row(variant):
    """The default LayerNorm on one DeiT-small row (384 channels) for Neoverse N1: every loop
    understood, and no workspace allocation (a per-row buffer of 384 int32/int64 passed TVM's
    1 KiB stack limit and cost an allocation per row)."""
    import numpy as np
    from tvm import te

    from intvit.api.kernel_bench import int_kernel
    from intvit.deploy.row_static import analyse_row_kernel
    from intvit.schedules.rowwise import schedule_rowwise

    args, _, vec = int_kernel("layernorm", (1, 384), variant, np.random.default_rng(0))
    func = schedule_rowwise(te.create_prim_func(list(args)), vectorize=vec)
    a = analyse_row_kernel(get_preset("graviton"), func, variant, "small_layernorm", 384)
    assert not a.unresolved and any(r.label != "<function>" for r in a.regions)
    assert "__TVMBackendAllocWorkspace" not in a.calls
    assert 0.5 < a.cycles_per_element < 50

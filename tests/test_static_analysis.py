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

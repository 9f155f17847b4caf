"""The fused low-rank linear (both factors in one kernel, ``h`` per chunk of rows): bit-exact
against its NumPy reference over swept shapes (ranks that fill the register tile or not,
columns that do or do not, several leading axes, one chunk or two), on every host
micro-kernel that runs here. Models with low-rank linears are checked end to end in
test_hetero.py (host) and test_device.py (the emulated ARM device). Every point of the
kernel's tuned space (its register tiles) is bit-exact too: a derandomized hypothesis sweep
over knob points x shapes here, seeded points on the emulated device."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intvit.deploy.targets import get_preset
from intvit.quant.plan_common import acc_bits
from intvit.schedules.hostcpu import host_cpu
from intvit.schedules.intrinsics import KERNELS, first_factor_tile, has_vnni, vnni_kernels
from intvit.schedules.low_rank import (
    LowRankKnobs,
    low_rank_gemm_func,
    low_rank_knob_space,
    low_rank_schedule,
    low_rank_workload,
)
from intvit.topi.low_rank_packed import pack_low_rank
from intvit.topi.low_rank_ref import low_rank_ref
from intvit.topi.requantize_params import RequantParams

HOST = get_preset("host")
X86 = not HOST.target.get("mtriple")
needs_avx2 = pytest.mark.skipif(not X86 or "avx2" not in host_cpu()[1], reason="no AVX2 here")
needs_vnni = pytest.mark.skipif(not X86 or not has_vnni(host_cpu()[1]), reason="no VNNI here")
VNNI_4X4, VNNI_4X6 = vnni_kernels(("avx512vl",))
# (first, second): the two tiles a low-rank linear gets on each host kernel
PAIRS = [
    pytest.param(KERNELS["avx-vnni"], KERNELS["avx-vnni"], marks=needs_vnni, id="vnni-6x2"),
    pytest.param(VNNI_4X6, VNNI_4X4, marks=needs_vnni, id="vnni-4x6-4x4"),
    pytest.param(VNNI_4X4, VNNI_4X6, marks=needs_vnni, id="vnni-4x4-4x6"),
    pytest.param(
        KERNELS["avx2-maddubsw"], KERNELS["avx2-maddubsw"], marks=needs_avx2, id="maddubsw"
    ),
]


def _run(x, down, b1, rq, up, b2, first, second, chunks, knobs=None) -> np.ndarray:
    func = low_rank_gemm_func(
        x.shape, str(x.dtype), down, up, rq, first, second, chunks, True, knobs
    )
    first = first_factor_tile((first,), first, down.shape[0])
    mod = tvm.compile(tvm.IRModule({"main": func}), target=HOST.tvm_target()).jit()
    args = [x, *pack_low_rank(down, b1, str(x.dtype), up, b2, rq.out_dtype, first, second)]
    out = tvm.runtime.tensor(np.zeros((*x.shape[:-1], up.shape[0]), np.int32))
    mod["main"](*(tvm.runtime.tensor(a) for a in args), out)
    return out.numpy()


@pytest.mark.parametrize(("first", "second"), PAIRS)
@pytest.mark.parametrize(
    ("lead", "k", "rank", "n", "chunks"),
    [
        ((1, 197), 192, 48, 576, 2),  # DeiT-tiny qkv at a quarter rank
        ((1, 197), 192, 96, 64, 2),  # 64 columns: not whole 48-column tiles
        ((1, 17), 64, 16, 192, 1),  # a digits model's row count, one chunk
        ((1, 17), 64, 18, 100, 2),  # rank and width that fill no tile (padded depth)
        ((2, 65), 8, 4, 16, 1),  # a rank below one vector (found by hypothesis)
        ((1, 9), 16, 1, 8, 1),
        ((2, 17), 72, 24, 96, 2),  # two leading axes: the epilogue over flattened rows
        ((3, 5, 7), 40, 8, 24, 1),
    ],
)
def test_fused_low_rank_is_bit_exact(first, second, lead, k, rank, n, chunks):
    rng = np.random.default_rng(rank * 1000 + n)
    w_max = 64 if first.weight_max < 127 else 127
    x = rng.integers(-128, 128, (*lead, k), dtype=np.int8)
    x[..., 0] = -128  # extremes in both operands
    down = rng.integers(-w_max, w_max + 1, (rank, k), dtype=np.int8)
    down[0, 0] = -w_max
    up = rng.integers(-w_max, w_max + 1, (n, rank), dtype=np.int8)
    b1 = rng.integers(-(2**12), 2**12, rank).astype(np.int32)
    b2 = rng.integers(-(2**12), 2**12, n).astype(np.int32)
    rq = RequantParams.make(2.0**-9 / k, acc_bits(k), "int8")  # h spans the int8 range
    got = _run(x, down, b1, rq, up, b2, first, second, chunks)
    np.testing.assert_array_equal(got, low_rank_ref(x, down, b1, rq, up, b2))


#: (leading dims, K, rank, N, chunks) of the knob sweep: DeiT-tiny's qkv at a quarter rank,
#: a padded output width (epilogue per chunk), a digits model's rows in one chunk
KNOB_SHAPES = [((1, 197), 192, 48, 576, 2), ((1, 17), 64, 18, 100, 2), ((1, 17), 64, 16, 192, 1)]


def _operands(lead, k, rank, n, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (*lead, k), dtype=np.int8)
    down = rng.integers(-127, 128, (rank, k), dtype=np.int8)
    up = rng.integers(-127, 128, (n, rank), dtype=np.int8)
    b1 = rng.integers(-(2**12), 2**12, rank).astype(np.int32)
    b2 = rng.integers(-(2**12), 2**12, n).astype(np.int32)
    return x, down, b1, RequantParams.make(2.0**-9 / k, acc_bits(k), "int8"), up, b2


@st.composite
def low_rank_cases(draw):
    """A shape and a point of its fused low-rank linear's knob space (VNNI kernels)."""
    lead, k, rank, n, chunks = draw(st.sampled_from(KNOB_SHAPES))
    first = first_factor_tile((VNNI_4X6,), VNNI_4X6, rank)
    x, down, _, rq, up, _ = _operands(lead, k, rank, n, 0)
    func = low_rank_workload(x.shape, "int8", down, up, rq, first, VNNI_4X4, chunks)
    space = low_rank_knob_space(func, first, VNNI_4X4, chunks)
    return lead, k, rank, n, chunks, draw(st.sampled_from(space))


@needs_vnni
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=low_rank_cases())
def test_every_low_rank_knob_point_is_bit_exact(case):
    """Any register tiles a tuning job may pick for the fused low-rank linear compute the
    reference's integers."""
    lead, k, rank, n, chunks, knobs = case
    x, down, b1, rq, up, b2 = _operands(lead, k, rank, n, rank + n)
    got = _run(x, down, b1, rq, up, b2, VNNI_4X6, VNNI_4X4, chunks, knobs)
    np.testing.assert_array_equal(got, low_rank_ref(x, down, b1, rq, up, b2))


def test_low_rank_defaults_are_a_point_of_the_space_and_replay():
    """The hand-chosen tiles are in the space, and their schedule's trace replays to the
    same kernel (what a tuning database applies)."""
    lead, k, rank, n, chunks = KNOB_SHAPES[0]
    first = first_factor_tile((VNNI_4X6,), VNNI_4X6, rank)
    x, down, _, rq, up, _ = _operands(lead, k, rank, n, 0)
    func = low_rank_workload(x.shape, "int8", down, up, rq, first, VNNI_4X4, chunks)
    default = LowRankKnobs.default(first, VNNI_4X4)
    assert default in low_rank_knob_space(func, first, VNNI_4X4, chunks)
    sch = low_rank_schedule(func, first, VNNI_4X4, chunks)
    replayed = tvm.s_tir.Schedule(func)
    sch.trace.apply_to_schedule(replayed, remove_postproc=False)
    tvm.ir.assert_structural_equal(replayed.mod["main"], sch.mod["main"])

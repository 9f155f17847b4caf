"""The packed GEMM's tuned knobs (register tile, parallel split, epilogue placement): every
point of the space bit-exact against the reference on this host (a derandomized hypothesis
sweep over knobs x shapes; the ARM micro-kernels' sweep runs on the emulated device, in
``tests/test_device.py``), the defaults unchanged, and tuning records read back as knobs."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tvm import te

from intvit.deploy.targets import get_preset
from intvit.schedules.gemm import (
    default_gemm_schedule,
    default_knobs,
    gemm_facts,
    knob_schedule,
    knob_space,
    packed_gemm_workload,
    schedule_packed_gemm,
)
from intvit.schedules.gemm_knobs import (
    Epilogue,
    GemmKnobs,
    GemmLayout,
    Split,
    knobs_of_trace,
    legal_layouts,
)
from intvit.schedules.intrinsics import KERNELS, gemm_kernel_for, vnni_kernel
from intvit.topi.dense_packed import batch_matmul_packed, pack_bias, pack_weights
from intvit.topi.matmul_ref import batch_matmul_ref, dense_ref

HOST = get_preset("host")
KERNEL = gemm_kernel_for(HOST.target)
needs_kernel = pytest.mark.skipif(KERNEL is None, reason="no dot-product micro-kernel here")

#: (rows as x's leading shape, K, N): DeiT's GEMM shapes at one block's width, the digits
#: models', narrow ones (row chunks), padded widths, several row axes, and K blocked
SHAPES = [
    ((197,), 192, 576),
    ((197,), 768, 192),
    ((2, 40), 512, 64),
    ((197,), 192, 48),
    ((17,), 64, 192),
    ((2, 197), 64, 256),
    ((3, 17), 30, 50),
    ((5,), 6, 3),
    ((64,), 40, 72),
]


def _unscheduled(lead, k, n, x_dtype, kernel):
    return packed_gemm_workload((*lead, k), x_dtype, n, kernel)


def _run_dense(func, x, w, b, kernel) -> np.ndarray:
    mod = tvm.compile(tvm.IRModule({"main": func}), target=HOST.tvm_target()).jit()
    out = tvm.runtime.tensor(np.zeros((*x.shape[:-1], w.shape[0]), np.int32))
    bias = pack_bias(w, b, str(x.dtype), kernel)
    mod["main"](*(tvm.runtime.tensor(a) for a in (x, pack_weights(w, kernel), bias)), out)
    return out.numpy()


def _operands(lead, k, n, x_dtype, kernel, seed: int):
    rng = np.random.default_rng(seed)
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max, (*lead, k), endpoint=True).astype(x_dtype)
    w_lo, w_hi = max(-128, -kernel.weight_max), min(127, kernel.weight_max)
    w = rng.integers(w_lo, w_hi, (n, k), endpoint=True).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, n).astype(np.int32)
    return x, w, b


@st.composite
def dense_cases(draw, kernel):
    """A shape, an activation dtype and a point of that GEMM's knob space."""
    lead, k, n = draw(st.sampled_from(SHAPES))
    x_dtype = draw(st.sampled_from(["int8", "uint8"]))
    space = knob_space(_unscheduled(lead, k, n, x_dtype, kernel), kernel)
    return lead, k, n, x_dtype, draw(st.sampled_from(space))


@needs_kernel
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=dense_cases(KERNEL or KERNELS["avx-vnni"]))
def test_every_knob_point_is_bit_exact(case):
    """Any register tile, split and epilogue a tuning job may pick computes the reference's
    integers (the host's micro-kernel; weights over its whole exact range)."""
    lead, k, n, x_dtype, knobs = case
    x, w, b = _operands(lead, k, n, x_dtype, KERNEL, k + n)
    func = schedule_packed_gemm(_unscheduled(lead, k, n, x_dtype, KERNEL), KERNEL, True, knobs)
    np.testing.assert_array_equal(_run_dense(func, x, w, b, KERNEL), dense_ref(x, w, b))


@needs_kernel
@pytest.mark.parametrize(
    "layout", ["columns/register", "columns/column", "rowsx2/top", "bothx2/register"]
)
def test_each_layout_on_a_deit_shape_is_bit_exact(layout):
    """Every layout at DeiT-tiny's qkv width (197 x 192 -> 576), with the largest tile."""
    lead, k, n = (197,), 192, 576
    func = _unscheduled(lead, k, n, "int8", KERNEL)
    chosen = GemmLayout.parse(layout)
    points = [p for p in knob_space(func, KERNEL) if p.layout == chosen]
    assert points, f"{layout} is not legal here"
    knobs = max(points, key=lambda p: (p.m_tile * p.n_vectors, p.m_tile))
    x, w, b = _operands(lead, k, n, "int8", KERNEL, 3)
    out = _run_dense(schedule_packed_gemm(func, KERNEL, True, knobs), x, w, b, KERNEL)
    np.testing.assert_array_equal(out, dense_ref(x, w, b))


@needs_kernel
@pytest.mark.parametrize(
    "layout", ["columns/column/kblocks", "columns/top/kblocks", "bothx2/top/kblocks"]
)
def test_k_blocked_layouts_on_deit_fc2_are_bit_exact(layout):
    """K blocked (DeiT-tiny's fc2, K = 768: 192 steps of 4), with the smallest and the
    largest K block, each with the largest tile: each column tile's panel swept block by
    block."""
    lead, k, n = (197,), 768, 192
    func = _unscheduled(lead, k, n, "uint8", KERNEL)
    chosen = GemmLayout.parse(layout)
    points = [p for p in knob_space(func, KERNEL) if p.layout == chosen]
    assert points, f"{layout} is not legal here"
    x, w, b = _operands(lead, k, n, "uint8", KERNEL, 11)
    blocks = sorted({p.k_block for p in points})
    for block in (blocks[0], blocks[-1]):
        knobs = max(
            (p for p in points if p.k_block == block),
            key=lambda p: (p.m_tile * p.n_vectors, p.m_tile),
        )
        out = _run_dense(schedule_packed_gemm(func, KERNEL, True, knobs), x, w, b, KERNEL)
        np.testing.assert_array_equal(out, dense_ref(x, w, b), err_msg=str(knobs))


def test_k_blocked_knobs_replay_from_their_trace():
    """A K-blocked point's trace names its K block (what the knob table reports) and replays
    to the same kernel; a K block without a K-blocked layout, or the converse, is refused."""
    kernel = vnni_kernel(("avx512vl",))
    func = _unscheduled((197,), 768, 192, "int8", kernel)
    tile = (kernel.m_tile, kernel.n_vectors)
    knobs = GemmKnobs(GemmLayout(Split.COLUMNS, Epilogue.TOP, 1, True), *tile, 24)
    assert knobs in knob_space(func, kernel)
    sch = knob_schedule(func, kernel, True, knobs)
    assert knobs_of_trace(sch.trace, kernel.rows) == knobs
    assert str(knobs) == f"{tile[0]}x{tile[1]} columns/top/kblocks K-block 24 steps"
    replayed = tvm.s_tir.Schedule(func)
    sch.trace.apply_to_schedule(replayed, remove_postproc=False)
    tvm.ir.assert_structural_equal(replayed.mod["main"], sch.mod["main"])
    with pytest.raises(ValueError, match="K block iff K is blocked"):
        knob_schedule(func, kernel, True, GemmKnobs(GemmLayout(), *tile, 24))
    with pytest.raises(ValueError, match="K block iff K is blocked"):
        knob_schedule(func, kernel, True, GemmKnobs(knobs.layout, *tile))


@needs_kernel
@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    shape=st.sampled_from([(3, 197, 197, 64), (4, 17, 17, 16), (2, 7, 5, 3), (3, 197, 64, 197)]),
    data=st.data(),
)
def test_every_batch_matmul_knob_point_is_bit_exact(shape, data):
    """Attention's grouped GEMMs (runtime operands, packed in the kernel): any tile."""
    g, m, n, k = shape
    a = te.placeholder((g, m, k), "int8", name="a")
    bt = te.placeholder((g, n, k), "int8", name="b")
    func = te.create_prim_func([a, bt, batch_matmul_packed(a, bt, KERNEL)])
    knobs = data.draw(st.sampled_from(knob_space(func, KERNEL)))
    assert knobs.layout.split is Split.COLUMNS  # groups index the parallel loop
    mod = tvm.compile(
        tvm.IRModule({"main": schedule_packed_gemm(func, KERNEL, True, knobs)}),
        target=HOST.tvm_target(),
    ).jit()
    rng = np.random.default_rng(m + n)
    x = rng.integers(-128, 128, (g, m, k), dtype=np.int8)
    y = rng.integers(-128, 128, (g, n, k), dtype=np.int8)
    out = tvm.runtime.tensor(np.zeros((g, m, n), np.int32))
    mod["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(y), out)
    np.testing.assert_array_equal(out.numpy(), batch_matmul_ref(x, y))


@pytest.mark.parametrize(
    "kernel",
    [
        KERNELS["avx2-pmaddwd"],
        vnni_kernel(("avx512vl",)),
        KERNELS["arm-sdot-lane"],
        KERNELS["arm-smmla"],
        KERNELS["arm-neon"],
    ],
    ids=lambda k: f"{k.name}-{k.m_tile}x{k.n_vectors}",
)
def test_defaults_are_a_point_of_the_space_and_replay_from_their_trace(kernel):
    """The hand-chosen knobs are in the searched space, their schedule's trace names them
    (what the benchmark reports per shape), and replaying the trace gives the same kernel
    (what a tuning database applies)."""
    for lead, k, n in SHAPES:
        func = _unscheduled(lead, k, n, "int8", kernel)
        facts = gemm_facts(tvm.s_tir.Schedule(func), kernel, True)
        knobs = default_knobs(facts, kernel)
        assert knobs in knob_space(func, kernel)
        assert knobs.layout in legal_layouts(facts)
        sch = default_gemm_schedule(func, kernel)
        assert knobs_of_trace(sch.trace, kernel.rows) == knobs
        replayed = tvm.s_tir.Schedule(func)
        sch.trace.apply_to_schedule(replayed, remove_postproc=False)
        tvm.ir.assert_structural_equal(replayed.mod["main"], sch.mod["main"])
        direct = schedule_packed_gemm(func, kernel, True)
        tvm.ir.assert_structural_equal(direct.without_attr("tirx.is_scheduled"), sch.mod["main"])


def test_layouts_follow_what_tvm_computes_exactly():
    """No tiled epilogue where the padded columns exceed the output's or the rows span two
    axes (TVM 0.27 infers a wrong row range there), no column-tile epilogue under row
    chunks, no row chunks for attention's grouped GEMMs or a GEMM run on one thread."""
    kernel = vnni_kernel(("avx512vl",))
    padded = legal_layouts(
        gemm_facts(tvm.s_tir.Schedule(_unscheduled((17,), 64, 100, "int8", kernel)), kernel, True)
    )
    assert {lay.epilogue for lay in padded} == {Epilogue.TOP}
    two_axes = gemm_facts(
        tvm.s_tir.Schedule(_unscheduled((2, 197), 64, 256, "int8", kernel)), kernel, True
    )
    assert not two_axes.tileable
    deit = legal_layouts(
        gemm_facts(tvm.s_tir.Schedule(_unscheduled((197,), 192, 576, "int8", kernel)), kernel, True)
    )
    assert GemmLayout(Split.ROWS, Epilogue.COLUMN, 2) not in deit
    assert GemmLayout(Split.ROWS, Epilogue.REGISTER, 2) in deit
    small = gemm_facts(
        tvm.s_tir.Schedule(_unscheduled((17,), 64, 64, "int8", kernel)), kernel, True
    )
    assert {lay.split for lay in legal_layouts(small)} == {Split.COLUMNS}
    assert not any(lay.k_blocked for lay in deit)  # K = 192: 48 steps, a panel fits any L1
    fc2 = legal_layouts(
        gemm_facts(tvm.s_tir.Schedule(_unscheduled((197,), 768, 192, "int8", kernel)), kernel, True)
    )
    blocked = [lay for lay in fc2 if lay.k_blocked]
    assert blocked and all(lay.epilogue is not Epilogue.REGISTER for lay in blocked)
    for text in ("columns/register", "rowsx2/top", "bothx2/column", "columns/top/kblocks"):
        assert str(GemmLayout.parse(text)) == text
    with pytest.raises(ValueError, match="not a GEMM layout: 'diagonal/top'"):
        GemmLayout.parse("diagonal/top")
    assert str(GemmKnobs(GemmLayout(), 4, 4)) == "4x4 columns/top"


@needs_kernel
@pytest.mark.parametrize("epilogue", list(Epilogue), ids=lambda e: e.value)
@pytest.mark.parametrize("name", ["digits_vit", "digits_swin"])
def test_every_epilogue_of_a_models_gemms_is_bit_exact(name, epilogue):
    """Each epilogue placement on every packed GEMM of a whole model, with the widest tile
    of that layout, wherever it is legal: the requantization epilogues (per-channel tables,
    a residual input, Swin's windows) on the register tile, per column tile or after the
    accumulation all give the reference forward's logits."""
    import torch
    from tvm import relax

    from intvit.deploy.compile import compile_relax, scheduled_module
    from intvit.models.datasets import digits
    from intvit.models.zoo import create_float_model
    from intvit.quant.calibrate import calibrate
    from intvit.quant.reference import reference_forward
    from intvit.schedules.intrinsics import gemm_kernels_for, kernel_of_func
    from intvit.schedules.model import schedule_rows
    from intvit.topi.kinds import PACKED_GEMM, kernel_kind

    torch.manual_seed(3)
    model = calibrate(create_float_model(name), digits("calib").images[:24])
    kernels = gemm_kernels_for(HOST.target)
    mod = scheduled_module(model, HOST, 1, tunable=True)  # batch 1: the rows are one axis
    scheduled = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    placed = 0
    for gv, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or kernel_kind(func) != PACKED_GEMM:
            continue
        kernel = kernel_of_func(func, kernels)
        space = [p for p in knob_space(func, kernel) if p.layout.epilogue is epilogue]
        if not space:
            space = [default_knobs(gemm_facts(tvm.s_tir.Schedule(func), kernel, True), kernel)]
        else:
            placed += 1
        knobs = max(space, key=lambda p: (p.m_tile * p.n_vectors, p.m_tile))
        scheduled[gv] = schedule_packed_gemm(func, kernel, True, knobs)
    assert placed > 0, f"no GEMM of {name} takes the {epilogue.value} epilogue"
    compiled = compile_relax(schedule_rows(scheduled, HOST.cores), HOST, "int", name, False)
    x = np.random.default_rng(5).integers(-128, 128, (1, 1, 32, 32), dtype=np.int8)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    np.testing.assert_array_equal(
        vm["main"](tvm.runtime.tensor(x)).numpy(), reference_forward(model, x)
    )

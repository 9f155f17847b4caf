"""The emulated aarch64 device over a real tracker: compiled models bit-exact there.

Marked ``device``; ``.ci/run`` runs it (it sets the device up itself: needs root, apt, PyPI).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time

import numpy as np
import pytest
import torch
import tvm

from intvit.api.bench import BenchRequest, run_bench
from intvit.deploy.bench import BenchConfig, DeviceError, DeviceSession
from intvit.deploy.compile import compile_int_model, compile_model, cross_compiler, export
from intvit.deploy.emulator import EmulatorError, default_root, start_emulated_server
from intvit.deploy.rpc import (
    Supervisor,
    connect_tracker,
    release_sessions,
    run_remote,
    start_tracker,
    wait_for_device,
)
from intvit.deploy.targets import get_preset
from intvit.models.datasets import digits
from intvit.models.gelu_less import swap_all
from intvit.models.zoo import create_float_model
from intvit.quant.artifact import save_int_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.reference import quantize_input, reference_forward
from intvit.schedules.gemm import PACKED_FUNC, packed_gemm_func
from intvit.schedules.intrinsics import KERNELS, gemm_kernels_for
from intvit.topi.dense_packed import pack_bias, pack_weights
from intvit.topi.kinds import PACKED_GEMM, kernel_kind
from intvit.topi.matmul_ref import dense_ref

pytestmark = [pytest.mark.device, pytest.mark.timeout(900)]


class ArmDevices:
    """Two emulated devices on one tracker: ``emu-a76`` (dotprod) and a supervised
    ``emu-a72`` (no dotprod: +dotprod code dies there with SIGILL)."""

    def __init__(self, session, port: int, a72: Supervisor):
        self.session, self.port, self.a72 = session, port, a72


@pytest.fixture(scope="module")
def arm_devices(tmp_path_factory):
    logs = tmp_path_factory.mktemp("rpc")
    with start_tracker(log_dir=logs) as tracker:
        try:
            a76 = start_emulated_server(tracker.port, "emu-a76", default_root())
            a72 = Supervisor(
                lambda: start_emulated_server(
                    tracker.port, "emu-a72", default_root(), cpu="cortex-a72"
                )
            )
        except EmulatorError as err:
            pytest.fail(f"the emulated ARM device could not start: {err}")
        with a76, a72:
            session = connect_tracker("127.0.0.1", tracker.port)
            wait_for_device(session, "emu-a76", 120)
            wait_for_device(session, "emu-a72", 120)
            yield ArmDevices(session, tracker.port, a72.watch())


@pytest.fixture(scope="module")
def arm_device(arm_devices):
    return arm_devices.session


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("digits_vit", QuantConfig()),
        ("digits_deit", QuantConfig()),
        ("digits_swin", QuantConfig()),
        ("digits_vit", QuantConfig(softmax="shiftmax", gelu="shiftgelu", layernorm="ilayernorm")),
        ("digits_swin", QuantConfig(gelu="relu")),
    ],
    ids=["vit", "deit", "swin", "vit-ivit", "swin-gelu-less"],
)
@pytest.mark.parametrize("preset", ["aarch64-linux", "aarch64-dotprod", "graviton3"])
def test_model_bit_exact_on_emulated_arm(name, config, preset, arm_device, tmp_path):
    """Every model on the NEON, sdot and smmla micro-kernels; the GELU-less one feeds its fc2
    uint8 activations (offset by -128 for the int8 dot products)."""
    torch.manual_seed(2)
    float_model = create_float_model(name)
    if config.gelu == "relu":
        float_model = swap_all(float_model)
    model = calibrate(float_model, digits("calib").images[:24], config)
    lib = export(compile_model(model, preset, batch=2), preset, tmp_path / f"{name}.so")
    q = quantize_input(model, digits("test").images[:2])
    result = run_remote(arm_device, "emu-a76", lib, q)
    np.testing.assert_array_equal(result.outputs, reference_forward(model, q))


@pytest.mark.parametrize("name", ["low-rank", "odd-widths", "per-block"])
@pytest.mark.parametrize("preset", ["aarch64-linux", "aarch64-dotprod", "graviton3"])
def test_heterogeneous_models_bit_exact_on_emulated_arm(name, preset, arm_device, tmp_path):
    """The three fixed heterogeneous configs (every linear low-rank; attention dim 72 in 3
    heads with MLP hidden 100; per-block depth, heads and MLP ratio) on the NEON, sdot and
    smmla micro-kernels."""
    from test_hetero import CONFIGS

    from intvit.models.hetero_vit import HeteroViT

    torch.manual_seed(5)
    model = calibrate(HeteroViT(CONFIGS[name]).eval(), digits("calib").images[:24])
    lib = export(compile_model(model, preset, batch=2), preset, tmp_path / f"{name}.so")
    q = quantize_input(model, digits("test").images[:2])
    result = run_remote(arm_device, "emu-a76", lib, q)
    np.testing.assert_array_equal(result.outputs, reference_forward(model, q))


#: (leading dims, K, N): one row, odd rows (padded to the tile), DeiT-tiny's qkv, a batch,
#: and widths that do not divide the tile (padded inside the kernel).
ARM_GEMM_SHAPES = [
    ((1,), 8, 16),
    ((7,), 64, 32),
    ((197,), 192, 576),
    ((3, 17), 768, 16),
    ((5,), 6, 3),
    ((17,), 100, 72),
]


@pytest.mark.parametrize(
    ("preset", "kernel_name", "instruction"),
    [
        ("rpi4", "arm-neon", r"\tsadalp\t"),
        ("aarch64-linux", "arm-neon-pair16", r"\taddp\tv\d+\.8h"),
        ("aarch64-dotprod", "arm-sdot-lane", r"\tsdot\tv\d+\.4s, v\d+\.16b, v\d+\.4b\[3\]"),
        ("aarch64-dotprod", "arm-sdot", r"\tsdot\tv\d+\.4s, v\d+\.16b, v\d+\.16b"),
        ("graviton3", "arm-smmla", r"\tsmmla\t"),
    ],
)
def test_packed_gemms_bit_exact_on_emulated_arm(
    preset, kernel_name, instruction, arm_device, tmp_path
):
    """Each ARM micro-kernel over swept shapes, int8 and uint8 activations and the extreme
    values (all -128 at K = 4096; weights -127 for arm-neon-pair16, its exact range), in one
    library run on the emulated device; the library holds the instruction it is named for
    (the by-element ``sdot`` for ``arm-sdot-lane``, the preset's kernel; the broadcast
    ``arm-sdot`` and ``arm-neon-pair16`` are the static analysis' baselines)."""
    target = get_preset(preset)
    kernel = KERNELS[kernel_name]
    baseline = kernel_name in ("arm-sdot", "arm-neon-pair16")
    assert kernel in gemm_kernels_for(target.target) or baseline
    w_min = -min(128, kernel.weight_max)  # arm-neon-pair16 sums weights within +-127
    rng = np.random.default_rng(11)
    cases, funcs = {}, {}
    for i, (lead, k, n) in enumerate(ARM_GEMM_SHAPES):
        for dtype in ("int8", "uint8"):
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, (*lead, k), endpoint=True).astype(dtype)
            w = rng.integers(w_min, 127, (n, k), endpoint=True).astype(np.int8)
            b = rng.integers(-(2**20), 2**20, n).astype(np.int32)
            cases[f"gemm{i}_{dtype}"] = (x, w, b)
    cases["extreme"] = (
        np.full((5, 4096), -128, np.int8),
        np.full((16, 4096), w_min, np.int8),
        np.full(16, 7, np.int32),
    )
    for name, (x, w, _) in cases.items():
        func = packed_gemm_func(x.shape, str(x.dtype), w.shape[0], kernel)
        funcs[name] = func.with_attr("global_symbol", name)
    path = tmp_path / f"{preset}-gemms.so"

    def run_remotely() -> dict[str, np.ndarray]:
        rlib, dev = _load_on_emulated_arm(funcs, target, path, arm_device)
        outputs = {}
        for name, (x, w, b) in cases.items():
            args = [x, pack_weights(w, kernel), pack_bias(w, b, str(x.dtype), kernel)]
            out = tvm.runtime.tensor(np.zeros((*x.shape[:-1], w.shape[0]), np.int32), dev)
            rlib[name](*(tvm.runtime.tensor(a, dev) for a in args), out)
            outputs[name] = out.numpy()
        return outputs

    outputs = run_remotely()
    release_sessions()
    disassembly = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", str(path)], capture_output=True, text=True
    ).stdout
    assert re.search(instruction, disassembly), f"no {instruction!r} in the library"
    for name, (x, w, b) in cases.items():
        np.testing.assert_array_equal(outputs[name], dense_ref(x, w, b), err_msg=name)


def _load_on_emulated_arm(funcs: dict, target, path, arm_device):
    """``funcs`` (name -> PrimFunc) compiled for ``target`` into one library at ``path``,
    uploaded to and loaded on the emulated device: ``(module, device)``."""
    lib = tvm.compile(tvm.IRModule(funcs), target=target.tvm_target())
    lib.export_library(str(path), fcompile=cross_compiler(target))
    remote = arm_device.request("emu-a76", session_timeout=600)
    remote.upload(str(path))
    return remote.load_module(path.name), remote.cpu()


#: (rows as x's leading shape, K, N) of the knob sweep: DeiT-tiny's qkv and fc2, a narrow
#: GEMM (row chunks), the digits models' and a padded width
ARM_KNOB_SHAPES = [((197,), 192, 576), ((197,), 768, 192), ((197,), 192, 48), ((17,), 64, 72)]


@pytest.mark.parametrize(
    ("preset", "kernel_name"),
    [("rpi4", "arm-neon"), ("aarch64-dotprod", "arm-sdot-lane"), ("graviton3", "arm-smmla")],
)
def test_gemm_knob_points_bit_exact_on_emulated_arm(preset, kernel_name, arm_device, tmp_path):
    """A seeded sweep of the tuned space on each ARM micro-kernel: 10 (shape, activation
    dtype, knob point) cases drawn at random from every shape's space (register tile,
    parallel split, epilogue, K block), plus each shape's largest tile and one K-blocked
    point, in one library run on the emulated device, each equal to the reference."""
    from intvit.schedules.gemm import knob_space, packed_gemm_workload, schedule_packed_gemm

    target = get_preset(preset)
    kernel = KERNELS[kernel_name]
    rng = np.random.default_rng(23)
    cases, funcs = {}, {}
    for i in range(11 + len(ARM_KNOB_SHAPES)):
        lead, k, n = ARM_KNOB_SHAPES[i % len(ARM_KNOB_SHAPES)]
        dtype = ("int8", "uint8")[int(rng.integers(2))]
        func = packed_gemm_workload((*lead, k), dtype, n, kernel)
        space = knob_space(func, kernel)
        if i < len(ARM_KNOB_SHAPES):
            knobs = max(space, key=lambda p: (p.m_tile * p.n_vectors, p.m_tile))
        elif i == len(ARM_KNOB_SHAPES):  # fc2 (K = 768) with K blocked: panels block by block
            lead, k, n = ARM_KNOB_SHAPES[1]
            func = packed_gemm_workload((*lead, k), dtype, n, kernel)
            blocked = [p for p in knob_space(func, kernel) if p.layout.k_blocked]
            knobs = blocked[int(rng.integers(len(blocked)))]
        else:
            knobs = space[int(rng.integers(len(space)))]
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (*lead, k), endpoint=True).astype(dtype)
        w = rng.integers(-128, 127, (n, k), endpoint=True).astype(np.int8)
        b = rng.integers(-(2**20), 2**20, n).astype(np.int32)
        name = f"case{i}"
        cases[name] = (x, w, b, knobs)
        scheduled = schedule_packed_gemm(func, kernel, True, knobs)
        funcs[name] = scheduled.with_attr("global_symbol", name)
    rlib, dev = _load_on_emulated_arm(funcs, target, tmp_path / "knobs.so", arm_device)
    outputs = {}
    for name, (x, w, b, _) in cases.items():
        args = [x, pack_weights(w, kernel), pack_bias(w, b, str(x.dtype), kernel)]
        out = tvm.runtime.tensor(np.zeros((*x.shape[:-1], w.shape[0]), np.int32), dev)
        rlib[name](*(tvm.runtime.tensor(a, dev) for a in args), out)
        outputs[name] = out.numpy()
    release_sessions()
    for name, (x, w, b, knobs) in cases.items():
        np.testing.assert_array_equal(
            outputs[name], dense_ref(x, w, b), err_msg=f"{name}: {x.shape} x {w.shape} {knobs}"
        )


#: (groups, M, N, K): attention's q @ k^T at DeiT-tiny's and the digits ViT's sizes, odd
#: sizes padded to every tile, and one group of one.
ARM_BMM_SHAPES = [(3, 197, 197, 64), (4, 17, 17, 16), (2, 7, 5, 3), (1, 1, 1, 1)]


@pytest.mark.parametrize(
    ("preset", "kernel_name"),
    [("rpi4", "arm-neon"), ("aarch64-dotprod", "arm-sdot-lane"), ("graviton3", "arm-smmla")],
)
def test_packed_batch_matmuls_bit_exact_on_emulated_arm(preset, kernel_name, arm_device, tmp_path):
    """Attention's matmuls of two runtime tensors on each preset's ARM micro-kernel: int8 x
    int8 (queries x keys; exact for any int8 operands, -128 x -128 included: all -128 at K =
    4096) and uint8 x int8 (probabilities x values: ``a`` offset by -128, compensated by
    ``b``'s column sums; all 255 x -128 at K = 4096), in one library run on the emulated
    device."""
    from tvm import te

    from intvit.relax_ops.ops import _batch_matmul_kernel, gemm_kernels
    from intvit.schedules.gemm import schedule_packed_gemm
    from intvit.topi.dense_packed import batch_matmul_packed
    from intvit.topi.matmul_ref import batch_matmul_ref

    target = get_preset(preset)
    kernel = KERNELS[kernel_name]
    with gemm_kernels(gemm_kernels_for(target.target)):
        assert _batch_matmul_kernel("int8", "int8") is kernel
        assert _batch_matmul_kernel("uint8", "int8") is kernel
    rng = np.random.default_rng(17)
    cases = {
        f"bmm{i}": tuple(
            rng.integers(-128, 127, (g, r, k), endpoint=True).astype(np.int8) for r in (m, n)
        )
        for i, (g, m, n, k) in enumerate(ARM_BMM_SHAPES)
    }
    cases["extreme"] = (np.full((1, 5, 4096), -128, np.int8), np.full((1, 9, 4096), -128, np.int8))
    # probabilities x values: uint8 a, offset by -128 and compensated by b's column sums
    for i, (g, m, n, k) in enumerate(ARM_BMM_SHAPES):
        a = rng.integers(0, 255, (g, m, k), endpoint=True).astype(np.uint8)
        cases[f"bmm_u8_{i}"] = (
            a,
            rng.integers(-128, 127, (g, n, k), endpoint=True).astype(np.int8),
        )
    cases["extreme_u8"] = (
        np.full((1, 5, 4096), 255, np.uint8),
        np.full((1, 9, 4096), -128, np.int8),
    )
    funcs = {}
    for name, (a, b) in cases.items():
        at = te.placeholder(a.shape, str(a.dtype), name="a")
        bt = te.placeholder(b.shape, "int8", name="b")
        func = te.create_prim_func([at, bt, batch_matmul_packed(at, bt, kernel)])
        funcs[name] = schedule_packed_gemm(func, kernel).with_attr("global_symbol", name)
    rlib, dev = _load_on_emulated_arm(funcs, target, tmp_path / f"{preset}-bmm.so", arm_device)
    outputs = {}
    for name, (a, b) in cases.items():
        out = tvm.runtime.tensor(np.zeros((a.shape[0], a.shape[1], b.shape[1]), np.int32), dev)
        rlib[name](tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev), out)
        outputs[name] = out.numpy()
    release_sessions()
    for name, (a, b) in cases.items():
        np.testing.assert_array_equal(outputs[name], batch_matmul_ref(a, b), err_msg=name)


#: (leading dims, K, rank, N, chunks): as the host's fused low-rank sweep
#: (tests/test_low_rank_kernel.py).
ARM_LOW_RANK_SHAPES = [
    ((1, 197), 192, 48, 576, 2),
    ((1, 17), 64, 18, 100, 2),
    ((2, 17), 72, 24, 96, 2),
    ((3, 5, 7), 40, 8, 24, 1),
    ((1, 17), 64, 20, 64, 1),
    ((2, 65), 8, 4, 16, 1),
    ((1, 9), 16, 1, 8, 1),
]


@pytest.mark.parametrize(
    ("preset", "kernel_name"),
    [
        ("rpi4", "arm-neon"),
        ("aarch64-linux", "arm-neon-pair16"),
        ("aarch64-dotprod", "arm-sdot-lane"),
        ("graviton3", "arm-smmla"),
    ],
)
def test_fused_low_rank_bit_exact_on_emulated_arm(preset, kernel_name, arm_device, tmp_path):
    """The fused low-rank linear (both factors in one kernel) on each ARM micro-kernel over
    swept shapes (ranks and widths that fill no tile, several leading axes, one chunk or
    two), int8 activations with the default tiles and uint8 ones with a seeded point of the
    tuned space, in one library run on the emulated device."""
    from intvit.quant.plan_common import acc_bits
    from intvit.schedules.intrinsics import first_factor_tile
    from intvit.schedules.low_rank import (
        low_rank_gemm_func,
        low_rank_knob_space,
        low_rank_workload,
    )
    from intvit.topi.low_rank_packed import pack_low_rank
    from intvit.topi.low_rank_ref import low_rank_ref
    from intvit.topi.requantize_params import RequantParams

    target = get_preset(preset)
    kernel = KERNELS[kernel_name]
    w_max = min(127, kernel.weight_max)
    rng = np.random.default_rng(13)
    cases, funcs = {}, {}
    for i, (lead, k, rank, n, chunks) in enumerate(ARM_LOW_RANK_SHAPES):
        for dtype in ("int8", "uint8"):
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, (*lead, k), endpoint=True).astype(dtype)
            down = rng.integers(-w_max, w_max, (rank, k), endpoint=True).astype(np.int8)
            up = rng.integers(-w_max, w_max, (n, rank), endpoint=True).astype(np.int8)
            b1 = rng.integers(-(2**12), 2**12, rank).astype(np.int32)
            b2 = rng.integers(-(2**12), 2**12, n).astype(np.int32)
            rq = RequantParams.make(2.0**-9 / k, acc_bits(k), "int8")
            name = f"low_rank{i}_{dtype}"
            cases[name] = (x, down, b1, rq, up, b2)
            knobs = None  # int8: the default tiles; uint8: a seeded point of the tuned space
            if dtype == "uint8":
                first = first_factor_tile((kernel,), kernel, rank)
                workload = low_rank_workload(x.shape, dtype, down, up, rq, first, kernel, chunks)
                space = low_rank_knob_space(workload, first, kernel, chunks)
                knobs = space[int(rng.integers(len(space)))]
            func = low_rank_gemm_func(
                x.shape, dtype, down, up, rq, kernel, kernel, chunks, True, knobs
            )
            funcs[name] = func.with_attr("global_symbol", name)
    rlib, dev = _load_on_emulated_arm(funcs, target, tmp_path / f"{preset}-low-rank.so", arm_device)
    outputs = {}
    for name, (x, down, b1, rq, up, b2) in cases.items():
        first = first_factor_tile((kernel,), kernel, down.shape[0])
        args = [x, *pack_low_rank(down, b1, str(x.dtype), up, b2, rq.out_dtype, first, kernel)]
        out = tvm.runtime.tensor(np.zeros((*x.shape[:-1], up.shape[0]), np.int32), dev)
        rlib[name](*(tvm.runtime.tensor(a, dev) for a in args), out)
        outputs[name] = out.numpy()
    release_sessions()
    for name, (x, down, b1, rq, up, b2) in cases.items():
        want = low_rank_ref(x, down, b1, rq, up, b2)
        np.testing.assert_array_equal(outputs[name], want, err_msg=name)


def test_rpi4_preset_runs_on_a_cortex_a72(arm_device, tmp_path):
    """The rpi4 preset uses only the A72's features (its GEMMs: the NEON micro-kernel): it
    runs bit-exactly where dotprod does not exist. One GEMM's weights are given a -128 (the
    extreme a quantized model never has, which the int16 pair sums of the replaced
    ``arm-neon-pair16`` could not take): every GEMM is packed for ``arm-neon``."""
    from intvit.deploy.compile import scheduled_module
    from intvit.schedules.intrinsics import kernel_of_func

    torch.manual_seed(3)
    model = calibrate(create_float_model("digits_vit"), digits("calib").images[:24])
    name = next(k for k in model.tensors if k.endswith("fc1.w"))
    w = model.tensors[name].copy()
    w[0, 0] = -128
    model = dataclasses.replace(model, tensors={**model.tensors, name: w})  # a fresh plan
    preset = get_preset("rpi4")
    mod = scheduled_module(model, preset, 1)
    used = {
        kernel_of_func(f, gemm_kernels_for(preset.target)).name
        for _, f in mod.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc) and kernel_kind(f) == PACKED_GEMM
    }
    assert used == {"arm-neon"}
    compiled = compile_int_model(model, "rpi4")
    assert any(PACKED_FUNC in call.func for call in compiled.manifest.calls)
    lib = export(compiled, "rpi4", tmp_path / "rpi4.so")
    q = quantize_input(model, digits("test").images[:1])
    result = run_remote(arm_device, "emu-a72", lib, q)
    np.testing.assert_array_equal(result.outputs, reference_forward(model, q))


def test_unreachable_tracker_is_a_clear_error():
    from intvit.deploy.rpc import free_port

    with pytest.raises(ValueError, match=r"cannot reach the RPC tracker at 127\.0\.0\.1:"):
        connect_tracker("127.0.0.1", free_port())


@pytest.fixture(scope="module")
def vit_model():
    torch.manual_seed(4)
    return calibrate(create_float_model("digits_vit"), digits("calib").images[:24])


def test_tuning_on_the_emulated_arm_device_applies_bit_exactly(vit_model, arm_devices, tmp_path):
    """``intvit tune --target aarch64-dotprod --tracker --key emu-a76``: the first block's
    GEMMs (sdot-lane, their knobs) and softmax tuned with candidates cross-compiled here and
    run on the emulated device; the build with the database is bit-exact there. (Emulated
    timings say nothing of a real core: this checks the flow, not the choice.)"""
    from intvit.tune.job import TuneConfig, count_records, tune
    from intvit.tune.knobs_report import tuned_gemms

    preset = "aarch64-dotprod"
    db = tmp_path / "db"
    cfg = TuneConfig(
        preset=preset,
        trials=8,
        db=db,
        trials_per_iter=2,
        ops=("b0_",),
        tracker=f"127.0.0.1:{arm_devices.port}",
        key="emu-a76",
        progress=False,
    )
    summary = tune(vit_model, cfg, log=lambda *_: None)
    release_sessions()
    assert summary.failed == 0, summary.last_error
    assert summary.seeded > 0 and count_records(db) == summary.records_after <= 8
    assert tuned_gemms(db, get_preset(preset)), "no GEMM record for the device"
    lib = export(
        compile_int_model(vit_model, preset, db=db), get_preset(preset), tmp_path / "tuned.so"
    )
    q = quantize_input(vit_model, digits("test").images[:1])
    result = run_remote(arm_devices.session, "emu-a76", lib, q)
    np.testing.assert_array_equal(result.outputs, reference_forward(vit_model, q))


def test_bench_on_emulated_arm(vit_model, arm_devices, tmp_path):
    art = save_int_model(vit_model, tmp_path / "vit.int.safetensors")
    request = BenchRequest(
        art,
        f"127.0.0.1:{arm_devices.port}",
        "emu-a76",
        target="aarch64-dotprod",
        out=tmp_path,
        config=BenchConfig(warmup=1, number=1, repeat=3, step_timeout_s=300),
        progress=False,
    )
    report, paths = run_bench(request)
    data = json.loads(paths["json"].read_text())
    assert data["status"] == "complete" and data["emulated"] is True
    golden = data["device_info"].pop("golden")
    assert data["device_info"] == {"arch": "aarch64", "cpu": None, "bit_exact": True}
    assert golden and all(golden.values()), golden
    assert "meaningless" in data["latency_note"] and "emulated" in report.table()


def test_crashing_library_is_named_and_its_server_restarted(vit_model, arm_devices, tmp_path):
    """A +dotprod library on a Cortex-A72 dies with SIGILL and takes the server with it: the
    job gets a clear error naming the library, the supervisor restarts the server and names
    the library, and the device serves the next job."""
    lib = export(
        compile_model(vit_model, "aarch64-dotprod"), "aarch64-dotprod", tmp_path / "dotprod.so"
    )
    image = quantize_input(vit_model, digits("test").images[:1])
    before = len(arm_devices.a72.crashes)
    with pytest.raises(DeviceError, match=r"'emu-a72' running 'dotprod\.so' failed"):
        with DeviceSession(arm_devices.session, "emu-a72", BenchConfig(step_timeout_s=120)) as s:
            s.run(lib, image)
    deadline = time.monotonic() + 120
    while len(arm_devices.a72.crashes) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    crash = arm_devices.a72.crashes[-1]
    assert "killed by SIGILL while running 'dotprod.so'" in crash.message()
    wait_for_device(arm_devices.session, "emu-a72", 180)
    rpi4 = export(compile_model(vit_model, "rpi4"), "rpi4", tmp_path / "rpi4.so")
    result = run_remote(arm_devices.session, "emu-a72", rpi4, image)
    np.testing.assert_array_equal(result.outputs, reference_forward(vit_model, image))


def test_x86_library_is_refused_by_the_arm_device(vit_model, arm_devices, tmp_path):
    lib = export(compile_model(vit_model, "host"), "host", tmp_path / "x86.so")
    with DeviceSession(arm_devices.session, "emu-a76") as session:
        with pytest.raises(ValueError, match="built for x86_64, but device 'emu-a76' is aarch64"):
            session.load(lib)


@pytest.mark.parametrize(
    ("action", "sig"),
    [
        ("tracker", "SIGTERM"),
        ("tracker", "SIGKILL"),
        ("serve", "SIGHUP"),
        ("serve", "SIGINT"),
        ("serve", "SIGKILL"),
    ],
)
def test_a_signal_stops_the_service_it_started(action, sig, tmp_path, job_marker):
    """SIGTERM, SIGHUP (a closed terminal) or Ctrl-C to ``intvit device tracker|serve``
    stops its rpc_tracker / rpc_server child (its own process group): nothing is left
    listening or registered, and no process of the command is left. SIGKILL cannot be
    handled; the child dies with its parent all the same (``PR_SET_PDEATHSIG``)."""
    from intvit.deploy import rpc

    with rpc.start_tracker(log_dir=tmp_path) as tracker:
        _signal_check(action, tracker.port, sig, job_marker)


def _signal_check(action: str, tracker_port: int, sig: str, job_marker) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time

    from intvit.deploy.rpc import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "intvit.cli", "device", action]
    if action == "tracker":
        cmd += ["--port", str(port)]
    else:
        cmd += ["--tracker", f"127.0.0.1:{tracker_port}", "--key", f"sigterm-{port}"]
    job = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=job_marker.env,
        # a test run started in the background inherits SIGINT ignored: the job as a
        # user's shell starts it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = job.stdout.readline()  # printed once the service listens
        assert "127.0.0.1:" in line or "0.0.0.0:" in line, line
        if action == "serve":
            port = int(line.split("127.0.0.1:")[1].split(",")[0])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        job.send_signal(getattr(signal, sig))
        code = job.wait(timeout=60)
        output = job.stdout.read()
        assert code == (-signal.SIGKILL if sig == "SIGKILL" else 0), output
        assert "Traceback" not in output, output
    finally:
        if job.poll() is None:
            job.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if not job_marker.alive():
                return
        time.sleep(0.5)
    pytest.fail(
        f"after {sig} to intvit device {action}: port {port} listens or processes are left "
        f"({job_marker.alive()})"
    )

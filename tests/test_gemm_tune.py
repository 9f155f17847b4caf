"""The packed, tensorized int8 GEMM (bit-exact against the reference over swept shapes and
edge values, fused requantization) and MetaSchedule tuning jobs (database written, resumed
after an interruption, applied bit-exactly)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import tvm
from tvm import relax, te

from intvit.deploy.compile import compile_int_model
from intvit.deploy.targets import get_preset
from intvit.models.datasets import digits
from intvit.models.zoo import create_float_model
from intvit.quant.artifact import save_int_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.reference import reference_forward
from intvit.schedules.gemm import packed_gemm_func, schedule_packed_gemm
from intvit.schedules.hostcpu import host_cpu
from intvit.schedules.intrinsics import (
    KERNELS,
    gemm_kernel_for,
    gemm_kernels_for,
    has_vnni,
    kernel_for_gemm,
    kernel_of_func,
    vnni_kernel,
)
from intvit.topi.dense_packed import batch_matmul_packed, pack_bias, pack_weights
from intvit.topi.matmul_ref import batch_matmul_ref, dense_ref
from intvit.tune.job import TuneConfig, check_database, count_records, tune

HOST = get_preset("host")
KERNEL = gemm_kernel_for(HOST.target)
needs_kernel = pytest.mark.skipif(KERNEL is None, reason="no dot-product micro-kernel here")


def _run_packed(x: np.ndarray, w: np.ndarray, b: np.ndarray, kernel) -> np.ndarray:
    func = packed_gemm_func(x.shape, str(x.dtype), w.shape[0], kernel)
    mod = tvm.compile(tvm.IRModule({"main": func}), target=HOST.tvm_target()).jit()
    out = tvm.runtime.tensor(np.zeros((*x.shape[:-1], w.shape[0]), np.int32))
    bias = pack_bias(w, b, str(x.dtype), kernel)
    mod["main"](*(tvm.runtime.tensor(a) for a in (x, pack_weights(w, kernel), bias)), out)
    return out.numpy()


NARROW = KERNELS["avx2-maddubsw"]
needs_avx2 = pytest.mark.skipif(
    HOST.target.get("mtriple") or "avx2" not in host_cpu()[1], reason="no AVX2 on this host"
)
VNNI = KERNELS["avx-vnni"]
needs_vnni = pytest.mark.skipif(
    HOST.target.get("mtriple") or not has_vnni(host_cpu()[1]), reason="no VNNI on this host"
)


@pytest.mark.parametrize(
    "kernel",
    [
        pytest.param(KERNEL, marks=needs_kernel, id="host"),
        pytest.param(NARROW, marks=needs_avx2, id="avx2-maddubsw"),
        pytest.param(VNNI, marks=needs_vnni, id="avx-vnni"),
        pytest.param(vnni_kernel(("avx512vl",)), marks=needs_vnni, id="avx-vnni-4x4"),
    ],
)
@pytest.mark.parametrize(
    ("lead", "k", "n"),
    [
        ((1,), 2, 16),
        ((1,), 4, 16),
        ((7,), 64, 32),
        ((197,), 192, 576),
        ((197,), 384, 576),
        ((3, 17), 768, 16),
        ((1, 197), 96, 32),
        # widths that do not divide the tile: padded inside the kernel
        ((17,), 72, 216),
        ((17,), 100, 64),
        ((17,), 64, 100),
        ((5,), 6, 3),
        ((3, 17), 30, 50),
        # narrow (fewer than 8 column tiles: a low-rank linear's first factor), rows split
        # in two parallel chunks
        ((197,), 192, 48),
        ((197,), 768, 40),
        ((2, 197), 256, 32),
    ],
)
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_packed_gemm_bit_exact(kernel, lead, k, n, x_dtype):
    """The host's general kernel (any int8 weights) and ``vpmaddubsw`` (7-bit weights, int8
    activations offset to uint8 in the kernel), weights over each kernel's whole exact range;
    N and K that do not divide the register tile included."""
    rng = np.random.default_rng(k + n)
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max, (*lead, k), endpoint=True).astype(x_dtype)
    w_lo, w_hi = max(-128, -kernel.weight_max), min(127, kernel.weight_max)
    w = rng.integers(w_lo, w_hi, (n, k), endpoint=True).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, n).astype(np.int32)
    assert kernel.accepts(x_dtype, n, k)
    np.testing.assert_array_equal(_run_packed(x, w, b, kernel), dense_ref(x, w, b))


@needs_kernel
def test_packed_gemm_extreme_values():
    """All -128 (the largest products, 128*128 per term) at a K that fills int32 headroom."""
    x = np.full((5, 4096), -128, np.int8)
    w = np.full((16, 4096), -128, np.int8)
    b = np.full(16, 7, np.int32)
    np.testing.assert_array_equal(_run_packed(x, w, b, KERNEL), dense_ref(x, w, b))


@needs_avx2
@pytest.mark.parametrize("x_value", [-128, 127, 0, 255])
@pytest.mark.parametrize("w_value", [-64, 64])
def test_maddubsw_extreme_values(x_value, w_value):
    """The largest int16 pair sums vpmaddubsw forms (2 * 255 * 64 = 32640: uint8 255, or
    int8 127 offset to 255) and the most negative, at a K that fills the int32 headroom."""
    x_dtype = "uint8" if x_value > 127 or x_value == 0 else "int8"
    x = np.full((7, 4096), x_value, x_dtype)
    w = np.full((16, 4096), w_value, np.int8)
    w[::2, 1::2] = -w_value  # mixed signs in some columns
    b = np.full(16, -5, np.int32)
    np.testing.assert_array_equal(_run_packed(x, w, b, NARROW), dense_ref(x, w, b))


@needs_vnni
@pytest.mark.parametrize("x_value", [-128, 127, 0, 255])
@pytest.mark.parametrize("w_value", [-128, 127])
def test_vnni_extreme_values(x_value, w_value):
    """vpdpbusd sums four uint8 x int8 products per lane with no intermediate saturation:
    exact at 255 x -128 (int8 127 offset to 255), over a K that fills much of int32."""
    x_dtype = "uint8" if x_value > 127 or x_value == 0 else "int8"
    x = np.full((7, 4096), x_value, x_dtype)
    w = np.full((16, 4096), w_value, np.int8)
    w[::2, 1::2] = -128 if w_value > 0 else 127  # mixed signs in some columns
    b = np.full(16, 3, np.int32)
    np.testing.assert_array_equal(_run_packed(x, w, b, VNNI), dense_ref(x, w, b))


def test_narrow_kernel_only_takes_7bit_weights():
    w7 = np.full((16, 64), -64, np.int8)
    w8 = w7.copy()
    w8[3, 5] = 65
    with pytest.raises(ValueError, match=r"\|w\| <= 64.*got \|w\| = 65"):
        pack_weights(w8, NARROW)
    kernels = (NARROW, KERNELS["avx2-pmaddwd"])
    assert kernel_for_gemm(kernels, "int8", w7) is NARROW
    assert kernel_for_gemm(kernels, "int8", w8) is KERNELS["avx2-pmaddwd"]
    assert kernel_for_gemm(kernels, "int8", w7[:, :62]) is NARROW  # K padded to 64
    assert kernel_for_gemm(kernels, "int16", w7) is None
    with pytest.raises(ValueError, match="weight_bits"):
        QuantConfig(weight_bits=6)


@needs_kernel
@pytest.mark.parametrize(
    ("g", "m", "n", "k", "a_dtype"),
    [
        (1, 1, 1, 1, "int8"),
        (2, 7, 5, 3, "uint8"),
        (3, 197, 197, 64, "int8"),
        (3, 197, 64, 197, "uint8"),
    ],
)
@pytest.mark.parametrize("vnni", [False, True], ids=["int16", "vnni"])
def test_packed_batch_matmul_bit_exact(g, m, n, k, a_dtype, vnni):
    """Attention's matmuls of two runtime tensors: on the int16-operand kernel (any int8 /
    uint8 operands), and on VNNI (uint8 ``a`` as it is, probabilities x values; int8 ``a``
    offset by +128 and compensated by ``b``'s column sums, queries x keys), extremes in."""
    kernel = vnni_kernel(host_cpu()[1]) if vnni else KERNEL
    if vnni and (not has_vnni(host_cpu()[1]) or HOST.target.get("mtriple")):
        pytest.skip("VNNI runs on hosts that have it")
    if not vnni and KERNEL.operand != "int16":
        pytest.skip("attention GEMMs are packed only for int16-operand micro-kernels")
    rng = np.random.default_rng(g * m + n)
    info = np.iinfo(a_dtype)
    a = rng.integers(info.min, info.max, (g, m, k), endpoint=True).astype(a_dtype)
    b = rng.integers(-128, 127, (g, n, k), endpoint=True).astype(np.int8)
    a.flat[0], b.flat[0] = info.max, -128
    at = te.placeholder(a.shape, a_dtype, name="a")
    bt = te.placeholder(b.shape, "int8", name="b")
    func = te.create_prim_func([at, bt, batch_matmul_packed(at, bt, kernel)])
    func = schedule_packed_gemm(func, kernel)
    mod = tvm.compile(tvm.IRModule({"main": func}), target=HOST.tvm_target()).jit()
    out = tvm.runtime.tensor(np.zeros((g, m, n), np.int32))
    mod["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), out)
    np.testing.assert_array_equal(out.numpy(), batch_matmul_ref(a, b))


def test_kernel_choice_per_target():
    assert gemm_kernel_for(get_preset("aarch64-dotprod").target) is KERNELS["arm-sdot-lane"]
    assert gemm_kernel_for(get_preset("rpi4").target) is KERNELS["arm-neon"]
    assert gemm_kernel_for(get_preset("graviton3").target) is KERNELS["arm-smmla"]
    rpi4 = gemm_kernels_for(get_preset("rpi4").target)
    assert rpi4 == (KERNELS["arm-neon"],)
    assert kernel_for_gemm(rpi4, "uint8", np.full((4, 4), -128, np.int8)) is KERNELS["arm-neon"]
    pair16 = (KERNELS["arm-neon-pair16"],)  # int16 pair sums: weights within +-127 only
    assert kernel_for_gemm(pair16, "int8", np.full((4, 4), -127, np.int8)) is pair16[0]
    assert kernel_for_gemm(pair16, "int8", np.full((4, 4), -128, np.int8)) is None
    assert KERNELS["arm-smmla"].accepts("uint8", 8, 8)
    assert KERNELS["arm-smmla"].accepts("int8", 8, 12)  # K padded to steps of 8
    assert KERNELS["arm-sdot"].accepts("uint8", 64, 64)  # offset by -128, see pack_bias
    assert not KERNELS["arm-sdot"].accepts("int16", 64, 64)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(6)
    return calibrate(create_float_model("digits_vit"), digits("calib").images[:24])


def test_scheduled_model_is_bit_exact_and_has_no_separate_requantize(vit):
    compiled = compile_int_model(vit, "host", batch=2)
    x = np.random.default_rng(0).integers(-128, 128, (2, 1, 32, 32), dtype=np.int8)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    np.testing.assert_array_equal(
        vm["main"](tvm.runtime.tensor(x)).numpy(), reference_forward(vit, x)
    )
    funcs = [c.func for c in compiled.manifest.calls]
    if KERNEL is not None:
        # per block: qkv (one GEMM for q, k and v, requantized inside), proj, fc1
        # (requantized inside), fc2 and the two attention batch matmuls; plus the patch
        # embedding and the head (10 classes, padded to the tile inside the kernel)
        assert sum("_packed" in f for f in funcs) == 4 * (1 + 1 + 1 + 1 + 2) + 2
        assert not any(f.startswith("rq") and "qkv" in f for f in funcs)
        # one kernel lays q, k and v out per head (no transposes before the attention)
        assert sum(f.startswith("heads") for f in funcs) == 4
        assert sum(f.startswith("transpose") for f in funcs) == 4  # the context's merge


@needs_avx2
@pytest.mark.parametrize("batch", [1, 2])
def test_7bit_weight_model_uses_the_first_kernel_and_is_bit_exact(batch):
    """weight_bits=7: every constant-weight GEMM goes to the host's first kernel (vpmaddubsw
    on AVX2, vpdpbusd with VNNI; attention's runtime operands stay on vpmaddwd), and the
    library equals the reference forward."""
    from intvit.deploy.compile import scheduled_module

    torch.manual_seed(6)
    model = create_float_model("digits_vit")
    vit7 = calibrate(model, digits("calib").images[:24], QuantConfig(weight_bits=7))
    assert (
        max(
            int(np.abs(v.astype(np.int16)).max())
            for k, v in vit7.tensors.items()
            if k.endswith(".w")
        )
        == 63
    )
    compiled = compile_int_model(vit7, "host", batch=batch)
    x = np.random.default_rng(batch).integers(-128, 128, (batch, 1, 32, 32), dtype=np.int8)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    np.testing.assert_array_equal(
        vm["main"](tvm.runtime.tensor(x)).numpy(), reference_forward(vit7, x)
    )
    mod = scheduled_module(vit7, HOST, batch)
    kernels = gemm_kernels_for(HOST.target)
    used = [
        (gv.name_hint, kernel_of_func(f, kernels).name)
        for gv, f in mod.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc) and "_packed" in gv.name_hint
    ]
    dense = [k for name, k in used if not name.startswith("batch_matmul")]
    assert dense and set(dense) == {kernels[0].name}, used
    vnni = has_vnni(host_cpu()[1])
    assert kernels[0].name == ("avx-vnni" if vnni else "avx2-maddubsw")
    # both attention matmuls on VNNI where it exists (q @ k^T with q offset by +128 and
    # compensated by k's column sums), else on vpmaddwd
    attention = {k for name, k in used if name.startswith("batch_matmul")}
    assert attention == ({"avx-vnni"} if vnni else {"avx2-pmaddwd"}), used


def test_every_hand_schedule_is_seeded(vit, tmp_path):
    """A tuning job's first step measures intvit's own schedule of each packed GEMM (its
    default knobs) and row kernel on the runner's random data (full-range inputs, out of the
    kernels' contract): no kernel may trap on it (a LayerNorm whose sum of squares wrapped
    once divided by zero, SIGFPE)."""
    from intvit.deploy.compile import scheduled_module
    from intvit.schedules.database import extract_tasks
    from intvit.topi.kinds import PACKED_GEMM, ROW_KINDS, kernel_kind
    from intvit.tune.job import _builder, _runner
    from intvit.tune.seed import seed_hand_schedules

    preset = get_preset("host")
    target = preset.tvm_target()
    with target:
        mod = relax.transform.LegalizeOps()(scheduled_module(vit, preset, 1, tunable=True))
    tasks = [
        (task.task_name, kernel_kind(task.dispatched[0]["main"]))
        for task in extract_tasks(mod, target)
    ]
    kinds = {kind for _, kind in tasks}
    assert set(ROW_KINDS) - {"requantize"} <= kinds  # each kind is covered
    assert PACKED_GEMM in kinds or KERNEL is None
    names = [name for name, kind in tasks if kind in (*ROW_KINDS, PACKED_GEMM)]
    errors: list[str] = []
    cfg = TuneConfig(trials=len(names), db=tmp_path, progress=False)
    builder, runner = _builder(preset), _runner(cfg)
    seeded = seed_hand_schedules(
        mod, preset, tmp_path, names, builder, runner, len(names), True, errors.append
    )
    assert not errors and seeded == len(set(names)) == count_records(tmp_path), errors
    # Each record is tuned on one block's kernel and replayed on every block's own (other
    # constants, other block names): every GEMM and row kernel of the model gets its record,
    # and the build equals the reference.
    from intvit.schedules.database import apply_database

    not_replayed: list[str] = []
    applied = apply_database(mod, tmp_path, target, not_replayed)
    assert not not_replayed
    tuned = [
        gv.name_hint
        for gv, f in applied.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc)
        and kernel_kind(f) in (*ROW_KINDS, PACKED_GEMM)
        and not mod[gv].attrs.get("tirx.is_scheduled", False)
    ]
    assert tuned and all(applied[name].attrs["tirx.is_scheduled"] for name in tuned), tuned
    assert len(tuned) > len(names)  # one record serves several blocks' kernels
    compiled = compile_int_model(vit, "host", db=tmp_path)
    x = np.random.default_rng(5).integers(-128, 128, (1, 1, 32, 32), dtype=np.int8)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    np.testing.assert_array_equal(
        vm["main"](tvm.runtime.tensor(x)).numpy(), reference_forward(vit, x)
    )


@pytest.mark.slow
def test_tuning_database_written_resumed_and_applied(vit, tmp_path, job_marker):
    db = tmp_path / "db"
    cfg = TuneConfig(trials=8, db=db, trials_per_iter=4, ops=("softmax",), progress=False)
    summary = tune(vit, cfg, log=lambda *_: None)
    first = count_records(db)
    assert summary.records_after == first > 0
    # the 4 blocks' softmaxes are one task (they differ only in constants): intvit's row
    # schedule is measured first, then MetaSchedule's candidates (the progress callback sees
    # every one of those)
    assert summary.seeded == 1 and summary.measured > 0
    # every record within the budget, even where MetaSchedule measured a batch past it
    assert summary.seeded + summary.measured - summary.dropped_over_budget == first
    assert first == 8
    assert summary.failed == 0, summary.last_error  # candidates build and run
    check_database(db)
    # The budget is the database's: the same job again measures nothing.
    again = tune(vit, cfg, log=lambda *_: None)
    assert again.already_done >= 8 - summary.failed and again.measured == 0
    assert again.seeded == 0
    assert count_records(db) == first
    # An interrupted job (killed mid-run) loses nothing already recorded.
    art = save_int_model(vit, tmp_path / "vit.int.safetensors")
    cmd = [sys.executable, "-m", "intvit.cli", "tune", str(art), "--db", str(db)]
    job = subprocess.Popen(
        [*cmd, "--trials", "64", "--ops", "softmax,layernorm"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=job_marker.env,
    )
    # Kill it once it has recorded something of its own (not at a fixed time).
    seen, deadline = first, time.monotonic() + 240
    while seen == first and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = count_records(db)
    job.kill()
    job.wait(timeout=30)
    # its tuning process dies with it (MetaSchedule's workers after their candidate)
    deadline = time.monotonic() + 60
    while job_marker.alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not job_marker.alive(), "the killed job's processes go on tuning"
    assert seen > first, "the tuning job recorded nothing before it was killed"
    assert seen <= count_records(db) <= 64, "the killed job wrote past its budget"
    check_database(db)
    # A rerun extends the same database; compiling with it stays bit-exact.
    before = count_records(db)
    bigger = TuneConfig(trials=before + 4, db=db, trials_per_iter=4, ops=("softmax",))
    extended = tune(vit, bigger, log=lambda *_: None)
    todo = before + 4 - extended.already_done
    assert extended.measured > 0
    assert before < count_records(db) <= before + todo  # never past the budget
    compiled = compile_int_model(vit, "host", db=db)
    x = np.random.default_rng(1).integers(-128, 128, (1, 1, 32, 32), dtype=np.int8)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    np.testing.assert_array_equal(
        vm["main"](tvm.runtime.tensor(x)).numpy(), reference_forward(vit, x)
    )


@pytest.mark.slow
@needs_kernel
def test_tuning_searches_the_gemm_knobs_and_applies_them_bit_exactly(vit, tmp_path):
    """``intvit tune --ops packed_gemm``: each GEMM's default knobs are measured first, the
    search then measures other points of the space (another tile or layout), every record
    reads back as knobs, and the applied build equals the reference."""
    from intvit.tune.knobs_report import tuned_gemms

    db = tmp_path / "db"
    cfg = TuneConfig(trials=40, db=db, trials_per_iter=8, ops=("packed_gemm",), progress=False)
    summary = tune(vit, cfg, log=lambda *_: None)
    assert summary.failed == 0, summary.last_error
    assert summary.seeded >= 8 and summary.measured > 0
    gemms = tuned_gemms(db, HOST)
    assert len(gemms) == summary.seeded  # one default record per GEMM workload
    assert all(g.default_us is not None and g.best_us <= g.default_us for g in gemms)
    assert sum(g.records for g in gemms) == count_records(db)  # every record is a GEMM's
    explored = [g for g in gemms if g.records > 1]
    assert explored, "the search measured no point besides the defaults"
    compiled = compile_int_model(vit, "host", db=db)
    x = np.random.default_rng(4).integers(-128, 128, (2, 1, 32, 32), dtype=np.int8)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    for image in x:
        np.testing.assert_array_equal(
            vm["main"](tvm.runtime.tensor(image[None])).numpy(), reference_forward(vit, image[None])
        )


@pytest.mark.slow
def test_tuning_over_the_tracker_measures_on_every_server_of_the_key(vit, tmp_path):
    """``intvit tune --tracker --device``: MetaSchedule's RPC runner gets one worker per server
    registered under the key, and both local servers measure candidates; the records stay
    within the budget and the database applies bit-exactly."""
    from intvit.deploy import rpc

    logs = tmp_path / "logs"
    db = tmp_path / "db"
    with rpc.start_tracker(log_dir=logs) as tracker:
        address = f"127.0.0.1:{tracker.port}"
        with (
            rpc.start_host_server(tracker.port, "pair", log_dir=logs) as one,
            rpc.start_host_server(tracker.port, "pair", log_dir=logs) as two,
        ):
            client = rpc.connect_tracker("127.0.0.1", tracker.port)
            deadline = time.monotonic() + 60
            while rpc.servers_for_key(client.summary(), "pair") < 2:
                assert time.monotonic() < deadline, client.summary()
                time.sleep(0.5)
            # the softmaxes and the first block's GEMMs (their knobs) over the tracker
            cfg = TuneConfig(
                trials=16, db=db, trials_per_iter=6, ops=("softmax", "b0_"), tracker=address,
                key="pair", progress=False,
            )  # fmt: skip
            summary = tune(vit, cfg, log=lambda *_: None)
            served = [s.log.read_text().count("start serving") for s in (one, two)]
        with pytest.raises(ValueError, match="no server for key 'nobody'"):
            tune(vit, replace(cfg, key="nobody", trials=100), log=lambda *_: None)
    assert all(n > 0 for n in served), f"sessions served per server: {served}"
    assert summary.failed == 0, summary.last_error
    assert count_records(db) == summary.records_after <= 16
    if KERNEL is not None:
        from intvit.tune.knobs_report import tuned_gemms

        assert tuned_gemms(db, HOST), "no GEMM was tuned over the tracker"
    compiled = compile_int_model(vit, "host", db=db)
    x = np.random.default_rng(2).integers(-128, 128, (1, 1, 32, 32), dtype=np.int8)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    np.testing.assert_array_equal(
        vm["main"](tvm.runtime.tensor(x)).numpy(), reference_forward(vit, x)
    )


def test_corrupt_database_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"has no database_workload\.json"):
        check_database(tmp_path)
    (tmp_path / "database_workload.json").write_text("{}\n")
    (tmp_path / "database_tuning_record.json").write_text("[1, 2\n")
    with pytest.raises(ValueError, match=r"workload\.json' line 1 is not \[structural hash"):
        check_database(tmp_path)
    assert json.loads((tmp_path / "database_workload.json").read_text()) == {}
    (tmp_path / "database_workload.json").write_text('["0x1f", "{}"]\n')
    with pytest.raises(ValueError, match="line 1 is corrupt"):
        check_database(tmp_path)
    # valid JSON that is not a record: named with its line, before TVM's type errors
    for line, message in (
        ("[0, 5]", r"line 1 is not \[trace, run seconds"),
        ("[3, [[], [0.1], {}, []]]", "line 1 names workload 3; the database has 1"),
        ('[0, [[], ["fast"], {}, []]]', "line 1 has run seconds"),
    ):
        (tmp_path / "database_tuning_record.json").write_text(line + "\n")
        with pytest.raises(ValueError, match=message):
            check_database(tmp_path)
    (tmp_path / "database_tuning_record.json").write_text("[0, [[], [0.1], {}, []]]\n")
    assert check_database(tmp_path) == tmp_path


def test_tune_names_a_corrupt_line_and_drops_a_torn_tail(vit, tmp_path):
    """A corrupt record in the middle stops ``tune`` before any work, naming the line; a
    half-written last line (a killed job's) is dropped with a warning, the rest kept."""
    from intvit.tune.job import drop_torn_tail

    (tmp_path / "database_workload.json").write_text('["a", "{}"]\n')
    records = tmp_path / "database_tuning_record.json"
    records.write_text('[0, [[], [0.1], {}, []]]\n{"torn\n[0, 2]\n')
    with pytest.raises(ValueError, match=r"database_tuning_record\.json' line 2 is corrupt"):
        tune(vit, TuneConfig(trials=1, db=tmp_path, progress=False), log=lambda *_: None)
    records.write_text('[0, 1]\n[0, 2]\n[0, 3, {"to')
    said = []
    assert drop_torn_tail(records, said.append)
    assert records.read_text() == "[0, 1]\n[0, 2]\n" and "half-written" in said[0]
    assert not drop_torn_tail(records, said.append) and count_records(tmp_path) == 2
    records.write_text("[0, 1]")  # complete, only its newline missing: kept
    assert not drop_torn_tail(records) and records.read_text() == "[0, 1]\n"


@pytest.mark.slow
def test_fp32_baseline_is_tuned_by_the_same_job(tmp_path):
    """The FP32 baseline (TVM's fused build of the float model) gets the same kind of job and
    budget; its database applies at compile time and the output stays the float model's."""
    from intvit.deploy.compile import compile_float_model
    from intvit.tune.job import tune_float_model

    torch.manual_seed(7)
    model = create_float_model("digits_vit").eval()
    image = digits("test").images[:1].astype(np.float32)
    cfg = TuneConfig(trials=4, db=tmp_path / "fp32-db", trials_per_iter=4, progress=False)
    cfg = replace(cfg, ops=("fused_matmul",))
    summary = tune_float_model(model, image.shape, cfg, log=lambda *_: None)
    assert summary.measured > 0 and summary.failed == 0, summary.last_error
    assert tune_float_model(model, image.shape, cfg, log=lambda *_: None).measured == 0
    compiled = compile_float_model(model, image.shape, "host", "digits_vit", db=cfg.db)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(image))
    out = (out[0] if isinstance(out, tvm.ir.Array) else out).numpy()  # torch.export: a tuple
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_ctrl_c_stops_tune_after_its_batch_and_keeps_the_records(vit, tmp_path, job_marker):
    """Ctrl-C during ``intvit tune``: the job ends within seconds (the batch being measured
    is dropped, no KeyboardInterrupt traceback, no crash, no process left), says what it
    kept, and exits 130; the database is whole and a rerun extends it."""
    import signal

    art = save_int_model(vit, tmp_path / "vit.int.safetensors")
    db = tmp_path / "db"
    cmd = [sys.executable, "-m", "intvit.cli", "tune", str(art), "--db", str(db)]
    job = subprocess.Popen(
        [*cmd, "--trials", "200", "--ops", "softmax"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=job_marker.env,
        # a test run started in the background inherits SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: the job as a user's shell starts it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 300
        while count_records(db) == 0 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)  # the seeded row schedules are in: MetaSchedule's turn next
        time.sleep(5)
        job.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = job.communicate(timeout=300)
        took = time.monotonic() - sent
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, err[-2000:]
    assert took < 15, f"Ctrl-C took {took:.0f} s to end the job"
    time.sleep(1)
    assert not job_marker.alive(), "processes of the job are left running"
    assert "Traceback" not in err, err[-2000:]
    assert f"interrupted; the tuning records measured so far are in {db}" in err
    assert count_records(db) >= 1
    check_database(db)
    # the rerun after the interrupt reads the records back and extends them, within budget
    before = count_records(db)
    cfg = TuneConfig(trials=before + 4, db=db, trials_per_iter=4, ops=("softmax",))
    again = tune(vit, replace(cfg, progress=False), log=lambda *_: None)
    assert again.already_done >= 1 and again.measured > 0
    assert before < count_records(db) <= before + 4 + (before - again.already_done)
    check_database(db)


def test_x86_kernel_choice_follows_the_target_not_this_host():
    """A library for another x86 CPU gets that CPU's micro-kernels: AVX2 ones for Zen 2 on
    any host (a VNNI host used to give it VNNI kernels, which a Zen 2 cannot run), VNNI ones
    for Ice Lake, none for LLVM's generic x86-64."""
    from intvit.schedules.intrinsics import gemm_kernels_for

    def names(target):
        return [k.name for k in gemm_kernels_for(target)]

    assert names({"kind": "llvm", "mcpu": "znver2"}) == ["avx2-maddubsw", "avx2-pmaddwd"]
    assert names({"kind": "llvm", "mcpu": "icelake-server"})[0].startswith("avx-vnni")
    assert names({"kind": "llvm"}) == []
    assert names({"kind": "llvm", "mcpu": "znver2", "mattr": ["-avx2"]}) == []

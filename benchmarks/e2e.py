"""Benchmark: integer-only DeiT end to end on the host against every peer, in one run.

    .venv/bin/python benchmarks/e2e.py [--models deit_tiny_patch16_224,deit_small_patch16_224]
                                       [--trials N] [--db-root DIR]

Batch 1, the same thread count for all (TVM's runtime threads). Random weights (speed does not
depend on them), calibrated on random images. Peers: TVM FP32 of the same model (TVM's
tuning flow: legalized, constants folded, fused), PyTorch eager FP32, ONNX Runtime FP32, ONNX
Runtime int8 (static QDQ, dynamic, and dynamic with 7-bit weights). intvit is timed twice:
with 8-bit weights (the default) and with 7-bit weights (``weight_bits=7``, which puts the
GEMMs on AVX2's ``vpmaddubsw``; untuned, so with a smaller budget than every tuned
peer), the two in alternating rounds. With ``--trials N`` both TVM builds, intvit's integer
model and the FP32 baseline, are tuned by the same MetaSchedule job with the same budget of N
trials each (databases kept under ``--db-root``: a rerun reuses them and costs nothing), and
the untuned builds are reported too. The tuned integer model is timed in alternating rounds
with the untuned one, the tuned TVM FP32 build and the in-process peers, so that the machine
drifting does not pass for a tuning effect or a ratio (records with ``interleaved: true``).
Every integer library is checked bit-exact against the reference forward before it is timed.
Writes
benchmarks/results/e2e-<cpu>-<threads>t.json (one record per peer: case, ours, baseline,
ours_ms, baseline_ms, speedup), as it goes, and with ``--trials`` the knobs the tuning chose per
GEMM shape against the default knobs to benchmarks/results/e2e-knobs-<cpu>-<threads>t.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import tvm
from tvm import relax

from intvit.bench.peers import (
    TORCH_EAGER,
    onnxruntime_peers,
    onnxruntime_runners,
    openvino_peers,
    openvino_runners,
    torch_eager,
    torch_runner,
)
from intvit.bench.records import BenchRecord, RecordLog, host_named
from intvit.deploy.bench import BenchConfig, Latency
from intvit.deploy.compile import compile_float_model, compile_int_model
from intvit.deploy.targets import host_cpu
from intvit.models.zoo import create_float_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.reference import reference_forward

RESULTS = Path(__file__).resolve().parent / "results" / "e2e.json"
DB_ROOT = Path(__file__).resolve().parent.parent / "cache" / "tune"
CFG = BenchConfig(warmup=2, number=3, repeat=7)
PAUSE_S = 0.3  # between builds in alternating rounds (see _interleaved)


def _vm_latency(executable, image: np.ndarray, label: str) -> Latency:
    """Median over ``CFG`` repeats; a build slower than a second per run (untuned TVM FP32 of
    DeiT-small: ~9 s) gets 3 single runs instead, which says as much about a 9 s figure."""
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = tvm.runtime.tensor(image)
    start = time.perf_counter()
    vm["main"](x)
    slow = time.perf_counter() - start > 1.0
    number, repeat = (1, 3) if slow else (CFG.number, CFG.repeat)
    timer = vm.time_evaluator("main", tvm.cpu(), number=number, repeat=repeat)
    return Latency(label, "host", [float(s) * 1e3 for s in timer(x).results])


def _vm_runner(executable, image: np.ndarray):
    """One inference of a compiled Relax module on the host."""
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = tvm.runtime.tensor(image)
    main = vm["main"]
    return lambda: main(x)


def _interleaved(runners: dict[str, Callable[[], object]], rounds: int = 7) -> dict:
    """Latencies of several builds timed in alternating rounds (after a warm-up, ``CFG.number``
    runs each per round), so that the machine drifting during the run (this VM drifts by 10%
    and more over minutes) moves every build alike: how the tuned builds are compared with the
    untuned one and with the in-process peers."""
    for run in runners.values():
        for _ in range(CFG.warmup):
            run()
    samples: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(rounds):
        for label, run in runners.items():
            # Each runtime's thread pool spins for a while after its last run (ORT, OpenMP in
            # PyTorch, TVM): on 2 cores that spinning halved the next build's speed. A pause
            # lets them park, and a run warms this build's pool and caches again.
            time.sleep(PAUSE_S)
            for _ in range(CFG.warmup):
                run()
            start = time.perf_counter()
            for _ in range(CFG.number):
                run()
            samples[label].append((time.perf_counter() - start) * 1e3 / CFG.number)
    return {label: Latency(label, "host", ms) for label, ms in samples.items()}


def write_knobs(path: Path, name: str, db: Path) -> None:
    """Print and record (``path``, one entry per model) the knobs the tuning database at
    ``db`` chose per GEMM shape against the default knobs (both measured by the job)."""
    from intvit.deploy.targets import get_preset
    from intvit.tune.knobs_report import tuned_gemms

    gemms = tuned_gemms(db, get_preset("host"))
    print(f"{name}: knobs per GEMM (shape, kernel, default, tuned):")
    for gemm in gemms:
        print(f"  {gemm.row()}")
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = [
        {
            "shape": g.shape,
            "kernel": g.kernel,
            "default": str(g.default),
            "default_us": g.default_us,
            "tuned": str(g.best),
            "tuned_us": g.best_us,
            "measured": g.records,
        }
        for g in gemms
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def bench_model(name: str, trials: int, db_root: Path, keep, knobs_path: Path) -> None:
    from intvit.tune.job import TuneConfig, tune, tune_float_model

    torch.manual_seed(0)
    model = create_float_model(name)
    img = int(model.patch_embed.img_size[0])
    chans = int(model.patch_embed.proj.in_channels)
    calib = torch.randn(8, chans, img, img).numpy()
    print(f"{name}: calibrating ...", flush=True)
    int_model = calibrate(model, calib, progress=False)
    int_model7 = calibrate(model, calib, QuantConfig(weight_bits=7), progress=False)
    threads = int(tvm.runtime.num_threads())
    q = np.random.default_rng(0).integers(-128, 128, (1, chans, img, img), dtype=np.int8)
    image = np.random.default_rng(0).standard_normal((1, chans, img, img)).astype(np.float32)
    extra = {"threads": threads, "batch": 1}

    def integer_build(db: Path | None, label: str, im=int_model):
        print(f"{name}: compiling integer-only ({label}) ...", flush=True)
        compiled = compile_int_model(im, "host", db=db)
        vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
        if not np.array_equal(vm["main"](tvm.runtime.tensor(q)).numpy(), reference_forward(im, q)):
            raise AssertionError(f"{name}: the integer library differs from the reference")
        return compiled.executable

    def fp32_build(db: Path | None, label: str):
        print(f"{name}: compiling TVM FP32 ({label}) ...", flush=True)
        return compile_float_model(model, image.shape, "host", name, db=db).executable

    def fp32(db: Path | None, label: str) -> Latency:
        latency = _vm_latency(fp32_build(db, label), image, f"TVM FP32 ({label})")
        print(f"  TVM FP32 ({label}): {latency.median_ms:.2f} ms", flush=True)
        return latency

    # Peers first, each record written as soon as it exists: an interrupted run (tuning is
    # the long part) keeps every comparison it finished.
    untuned = integer_build(None, "untuned")
    label8, label7 = "intvit int (untuned)", "intvit int, 7-bit weights (untuned)"
    untuned7 = integer_build(None, "untuned, 7-bit weights", int_model7)
    # the two intvit builds in alternating rounds: their ratio does not depend on the drift
    mine = _interleaved({label8: _vm_runner(untuned, q), label7: _vm_runner(untuned7, q)})
    ours, ours7 = mine[label8], mine[label7]
    print(f"  {label8}: {ours.median_ms:.2f} ms, {label7}: {ours7.median_ms:.2f} ms", flush=True)
    peers = [fp32(None, "untuned"), torch_eager(model, image, threads, CFG)]
    peers.extend(onnxruntime_peers(model, image, threads, CFG, int8=True))
    peers.extend(openvino_peers(model, image, threads, CFG))
    for mine in (ours, ours7):
        for peer in [ours, *peers] if mine is ours7 else peers:
            keep(BenchRecord(name, mine.label, peer.label, mine.median_ms, peer.median_ms, extra))
    if not trials:
        return
    label = f"tuned, {trials} trials"
    cfg = TuneConfig(trials=trials, progress=False)
    cpu = host_cpu()[0]  # a database holds timings of one machine
    int_db, fp32_db = db_root / f"{name}-int-{cpu}", db_root / f"{name}-fp32-{cpu}"
    print(f"{name}: tuning integer-only ({trials} trials) ...", flush=True)
    int_tune = tune(int_model, replace(cfg, db=int_db))
    print(f"{name}: tuning TVM FP32 ({trials} trials) ...", flush=True)
    fp32_tune = tune_float_model(model, image.shape, replace(cfg, db=fp32_db))
    write_knobs(knobs_path, name, int_db)
    tuned_int = integer_build(int_db, label)
    tuned_fp32 = fp32_build(fp32_db, label)
    # Every build that runs in well under a second, timed in the same alternating rounds: the
    # tuned model's ratios do not depend on when each was measured.
    ours_label, before_label = f"intvit int ({label})", label8
    print(f"{name}: timing the tuned builds and the peers in alternating rounds ...", flush=True)
    runs = _interleaved(
        {
            before_label: _vm_runner(untuned, q),
            ours_label: _vm_runner(tuned_int, q),
            label7: _vm_runner(untuned7, q),
            f"TVM FP32 ({label})": _vm_runner(tuned_fp32, image),
            TORCH_EAGER: torch_runner(model, image, threads),
            **onnxruntime_runners(model, image, threads, int8=True),
            **openvino_runners(model, image, threads, int8=True),
        }
    )
    ours = runs.pop(ours_label)
    ours7 = runs.pop(label7)
    extra = dict(extra, trials=trials, interleaved=True)
    tuning = {
        "ours_tune_s": int_tune.seconds,
        "baseline_tune_s": fp32_tune.seconds,
        "ours_trials": int_tune.already_done + int_tune.measured,
        "baseline_trials": fp32_tune.already_done + fp32_tune.measured,
    }
    print(f"  intvit integer-only ({label}): {ours.median_ms:.2f} ms", flush=True)
    print(f"  {label7}: {ours7.median_ms:.2f} ms", flush=True)
    for mine in (ours, ours7):
        for peer in [ours, *runs.values()] if mine is ours7 else runs.values():
            more = tuning if peer.label.startswith("TVM FP32") else {}
            keep(
                BenchRecord(
                    name, mine.label, peer.label, mine.median_ms, peer.median_ms, {**extra, **more}
                )
            )


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="deit_tiny_patch16_224,deit_small_patch16_224")
    parser.add_argument(
        "--trials", type=int, default=0, help="MetaSchedule trials for each TVM build (0: none)"
    )
    parser.add_argument(
        "--db-root", type=Path, default=DB_ROOT, help="tuning databases (reused by a rerun)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    log = RecordLog.on_this_machine(
        args.out,
        lambda record: (
            f"  {record.ours} vs {record.baseline}: {record.baseline_ms:.2f} ms, "
            f"{record.speedup:.2f}x"
        ),
    )

    knobs_path = host_named(args.out.with_name("e2e-knobs.json"), log.machine)
    for name in args.models.split(","):
        bench_model(name, args.trials, args.db_root, log.add, knobs_path)
    print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())

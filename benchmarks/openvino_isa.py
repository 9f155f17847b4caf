"""Benchmark: which instructions the strongest x86 peer's speed comes from. OpenVINO int8
(NNCF post-training quantization, as in ``benchmarks/e2e.py``) timed twice in one run, each in
a fresh process: with oneDNN free to use every instruction set of this CPU (AMX tile units
where the CPU has them), and with ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` (the `vpdpbusd`
instructions intvit's kernels use).

    .venv/bin/python benchmarks/openvino_isa.py [--models deit_tiny_patch16_224,...]

Random weights and inputs, batch 1, 2 threads (the physical cores), median of 40 runs after
10 warm-up runs. Prints a table and writes benchmarks/results/openvino_isa.json (records:
model, isa, median_ms, machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "openvino_isa.json"
ISAS = {"default (all of this CPU's)": None, "AVX512_CORE_VNNI": "AVX512_CORE_VNNI"}


def _time_one(model_name: str) -> float:
    """OpenVINO int8's median latency (ms) for one model, in this process."""
    import torch

    from intvit.bench.peers import export_onnx, openvino_int8_runner
    from intvit.deploy.threads import physical_cores
    from intvit.models.zoo import create_float_model

    torch.manual_seed(0)
    model = create_float_model(model_name).eval()
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, 224, 224), dtype=np.float32)
    calib = rng.random((8, 3, 224, 224), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, image, Path(tmp) / "model.onnx")
        run = openvino_int8_runner(path, image, physical_cores(), calib)
        for _ in range(10):
            run()
        times = []
        for _ in range(40):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="deit_tiny_patch16_224,deit_small_patch16_224")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: time one model
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps({"median_ms": _time_one(args.one)}))
        return 0

    from intvit.bench.peers import nncf_available, openvino_available
    from intvit.bench.records import machine_info
    from intvit.deploy.threads import use_physical_cores

    # before TVM's thread pool starts (machine_info asks it its size): left to its default it
    # pins this process to one core, and the children would inherit that
    use_physical_cores()

    if not (openvino_available() and nncf_available()):
        print("openvino_isa: needs openvino and nncf (make install)", file=sys.stderr)
        return 1
    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    records = []
    print(f"{'model':28} {'oneDNN ISA':28} {'ms':>8}")
    for model in args.models.split(","):
        for label, isa in ISAS.items():
            env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
            if isa:
                env["ONEDNN_MAX_CPU_ISA"] = isa
            out = subprocess.run(
                [sys.executable, __file__, "--one", model],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            ms = json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]
            records.append({"model": model, "isa": label, "median_ms": ms, "machine": machine})
            print(f"{model:28} {label:28} {ms:8.2f}", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

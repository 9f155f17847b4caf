"""Benchmark: which part of a tuning database makes the tuned build faster or slower.

    .venv/bin/python benchmarks/tuned_parts.py [--model deit_tiny_patch16_224] [--db DIR]

The integer model (random weights, calibrated on random images, as ``benchmarks/e2e.py``)
built four ways from one tuning database (default: the one ``e2e.py --trials`` keeps for this
host): untuned; every record applied; only the packed GEMMs' records (their knobs); only the
other kernels' records (MetaSchedule's generic space). Each build is checked bit-exact
against the reference forward, then all four are timed in alternating rounds (median of the
rounds' means, the same threads). Prints a table and writes
benchmarks/results/tuned-parts-<cpu>-<threads>t.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "tuned-parts.json"
DB_ROOT = Path(__file__).resolve().parent.parent / "cache" / "tune"


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    import numpy as np
    import torch
    import tvm
    from tvm import relax

    from intvit.bench.records import host_named, machine_info
    from intvit.deploy.compile import compile_relax, scheduled_module
    from intvit.deploy.targets import get_preset, host_cpu
    from intvit.models.zoo import create_float_model
    from intvit.quant.calibrate import calibrate
    from intvit.quant.reference import reference_forward
    from intvit.schedules.database import apply_database
    from intvit.schedules.intrinsics import gemm_kernels_for
    from intvit.schedules.model import schedule_gemms, schedule_rows
    from intvit.topi.kinds import PACKED_GEMM, kernel_kind

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_tiny_patch16_224")
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    db = args.db or DB_ROOT / f"{args.model}-int-{host_cpu()[0]}"
    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    torch.manual_seed(0)  # the model and calibration benchmarks/e2e.py tunes
    model = create_float_model(args.model)
    img = int(model.patch_embed.img_size[0])
    chans = int(model.patch_embed.proj.in_channels)
    int_model = calibrate(model, torch.randn(8, chans, img, img).numpy(), progress=False)
    preset = get_preset("host")
    kernels = gemm_kernels_for(preset.target)
    base = scheduled_module(int_model, preset, 1, tunable=True)
    tuned = apply_database(base, db, preset.tvm_target())

    def records_of(take) -> tvm.IRModule:
        out = base.clone()
        for gv, func in tuned.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc) and take(kernel_kind(func)):
                out[gv] = func
        return out

    builds = {
        "untuned": base,
        "every record": tuned,
        "GEMM records only": records_of(lambda kind: kind == PACKED_GEMM),
        "other records only": records_of(lambda kind: kind != PACKED_GEMM),
    }
    q = np.random.default_rng(0).integers(-128, 128, (1, chans, img, img), dtype=np.int8)
    want = reference_forward(int_model, q)
    runs = {}
    for label, mod in builds.items():
        mod = schedule_rows(schedule_gemms(mod, kernels, preset.cores), preset.cores)
        vm = relax.VirtualMachine(compile_relax(mod, preset, "int", label).executable, tvm.cpu())
        x = tvm.runtime.tensor(q)
        if not np.array_equal(vm["main"](x).numpy(), want):
            raise AssertionError(f"{label}: the library differs from the reference")
        runs[label] = (vm, x)
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.rounds):
        for label, (vm, x) in runs.items():
            start = time.perf_counter()
            for _ in range(20):
                vm["main"](x)
            samples[label].append((time.perf_counter() - start) / 20 * 1e3)
    untuned = float(np.median(samples["untuned"]))
    rows = []
    for label, ms in samples.items():
        median = float(np.median(ms))
        rows.append({"build": label, "ms": median, "speedup_vs_untuned": untuned / median})
        print(f"  {label:<20} {median:6.3f} ms  {untuned / median:5.2f}x vs untuned", flush=True)
    path = host_named(args.out, machine)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine, "model": args.model, "db": str(db), "rounds": args.rounds}
    path.write_text(json.dumps({**data, "records": rows}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: every point of the packed GEMM's knob space on DeiT's GEMM shapes, timed.

    .venv/bin/python benchmarks/gemm_knobs.py [--shapes 197x192x576,...]

For the host's default micro-kernel, each DeiT-tiny and DeiT-small linear (batch 1): every
register tile, parallel split and epilogue placement the tuner may choose, and each K block
of the K-blocked layouts at the default tile, is built, checked bit-exact and timed (median
of TVM's time evaluator, the same threads). Prints, per shape, the default knobs' and the
best point's GMAC/s and their fraction of the measured peak of the micro-kernel's
instruction mix (a register-only loop of its own instructions on all threads,
:mod:`intvit.analysis.mix_peak`), and writes
benchmarks/results/gemm-knobs-<cpu>-<threads>t.json. An exhaustive sweep: the ceiling a
tuning job (``intvit tune``, which samples this space) can reach on this host.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "gemm-knobs.json"


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    import tvm

    from intvit.analysis.mix_peak import compiled_mix, has_mix, measure_mix_peak
    from intvit.bench.gemm_knobs import DEIT_SHAPES, sweep_shape
    from intvit.bench.records import host_named, machine_info
    from intvit.deploy.targets import get_preset
    from intvit.paths import write_text_atomic
    from intvit.schedules.intrinsics import gemm_kernels_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=None, help="MxKxN,... (default: DeiT's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    shapes = DEIT_SHAPES
    if args.shapes:
        shapes = tuple(tuple(int(v) for v in s.split("x")) for s in args.shapes.split(","))
    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    preset = get_preset("host")
    kernel = gemm_kernels_for(preset.target)[0]
    peak = None
    if has_mix(kernel):
        peak = measure_mix_peak(kernel, tvm.runtime.num_threads(), mix=compiled_mix(kernel))
        print(f"{kernel.name}: instruction-mix peak {peak:.0f} GMAC/s", flush=True)
    path = host_named(args.out, machine)
    rows = []
    measured = {f"{m}x{k}x{n}" for m, k, n in shapes}
    earlier = []  # this host's records of the shapes not measured now stay
    if path.is_file():
        try:
            earlier = [
                r for r in json.loads(path.read_text())["records"] if r["shape"] not in measured
            ]
        except (ValueError, KeyError, TypeError):
            parser.error(f"{str(path)!r} is not a gemm_knobs results file; move it away")
    print(
        f"{'shape':<14} {'default':<22} {'GMAC/s':>7} {'peak':>5}  "
        f"{'best':<22} {'GMAC/s':>7} {'peak':>5} {'gain':>6}"
    )
    for m, k, n in shapes:
        sweep = sweep_shape(m, k, n, kernel, preset.tvm_target(), peak)
        rows.append(
            {
                **asdict(sweep),
                "default": str(sweep.default),
                "best": str(sweep.best),
                "default_fraction_of_peak": sweep.fraction(sweep.default_gmacs),
                "best_fraction_of_peak": sweep.fraction(sweep.best_gmacs),
            }
        )
        pct = [
            "-" if f is None else f"{f:.0%}"
            for f in (rows[-1]["default_fraction_of_peak"], rows[-1]["best_fraction_of_peak"])
        ]
        print(
            f"{sweep.shape:<14} {sweep.default!s:<22} {sweep.default_gmacs:7.0f} {pct[0]:>5}  "
            f"{sweep.best!s:<22} {sweep.best_gmacs:7.0f} {pct[1]:>5} {sweep.gain:5.2f}x "
            f"({sweep.points} points)",
            flush=True,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"machine": machine, "records": earlier + rows}
        write_text_atomic(path, json.dumps(body, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

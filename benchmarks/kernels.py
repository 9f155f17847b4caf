"""Benchmark: integer kernels vs FP32 kernels (seed 001 Tables 3-4 shapes), one run.

    .venv/bin/python benchmarks/kernels.py [--quick]

Prints the table and writes benchmarks/results/kernels-<cpu>-<threads>t.json (records: case,
ours, baseline,
ours_ms, baseline_ms, speedup, machine, threads). Records are written as they are measured, so
an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from intvit.bench.kernels import run_kernel_bench
from intvit.bench.records import RecordLog

RESULTS = Path(__file__).resolve().parent / "results" / "kernels.json"


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 only, shorter timing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    log = RecordLog.on_this_machine(
        args.out,
        lambda record: (
            f"  {record.case:<14} {record.ours:<18} vs {record.baseline:<18} {record.speedup:6.2f}x"
        ),
    )

    run_kernel_bench(
        batches=(1,) if args.quick else (1, 16),
        min_repeat_ms=30 if args.quick else 100,
        on_record=log.add,
    )
    print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())

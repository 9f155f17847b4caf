"""Benchmark: intvit's packed, tensorized int8 GEMM vs TVM's default int8 and FP32 GEMMs.

    .venv/bin/python benchmarks/gemm.py

Shapes of DeiT-tiny and DeiT-small at batch 1 (197 tokens), for each micro-kernel of the host
(on AVX2: ``vpmaddwd`` for any int8 weights, ``vpmaddubsw`` for 7-bit ones). Prints a table
and writes benchmarks/results/gemm-<cpu>-<threads>t.json (records: case, ours, baseline,
ours_ms, baseline_ms,
speedup, gmacs, baseline_gmacs, peak_gmacs, fraction_of_peak, machine, threads), written as
they are measured. ``peak_gmacs``: in the same run, a register-only loop of the micro-kernel's
own instructions on all threads (:mod:`intvit.analysis.mix_peak`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from intvit.bench.gemm import run_gemm_bench
from intvit.bench.records import RecordLog
from intvit.deploy.targets import get_preset

RESULTS = Path(__file__).resolve().parent / "results" / "gemm.json"


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    log = RecordLog.on_this_machine(
        args.out,
        lambda record: (
            f"  {record.case:<14} {record.ours:<34} vs {record.baseline:<18} "
            f"{record.speedup:6.2f}x "
            f"({record.extra['gmacs']:.1f} vs {record.extra['baseline_gmacs']:.1f} GMAC/s"
            + (
                f"; {100 * record.extra['fraction_of_peak']:.0f}% of the mix peak "
                f"{record.extra['peak_gmacs']:.1f})"
                if "peak_gmacs" in record.extra
                else ")"
            )
        ),
    )

    run_gemm_bench(get_preset("host").target, on_record=log.add)
    print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())

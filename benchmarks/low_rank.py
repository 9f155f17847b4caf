"""Benchmark: a rank-r factorized int8 GEMM (both factors in one kernel) vs the full GEMM.

    .venv/bin/python benchmarks/low_rank.py

DeiT-tiny/small linear shapes at 197 tokens, ranks 0.25, 0.5 and 0.75 of min(K, N), on the
host's 8-bit-weight micro-kernel, both sides compiled Relax VM functions timed in alternating
rounds. Goal (heterogeneous-models issue): time ratio <= r(K+N)/(KN) + 0.10. Prints a table
and writes benchmarks/results/low_rank-<cpu>-<threads>t.json (records: case, ours, baseline,
ours_ms,
baseline_ms, speedup, rank, mac_ratio, time_ratio, bound, meets, machine, threads).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from intvit.bench.low_rank import low_rank_cases
from intvit.bench.records import RecordLog

RESULTS = Path(__file__).resolve().parent / "results" / "low_rank.json"


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    log = RecordLog.on_this_machine(
        args.out,
        lambda r: (
            f"  {r.case:<22} {r.ours_ms:8.3f} ms vs full {r.baseline_ms:8.3f} ms: time ratio "
            f"{r.extra['time_ratio']:.3f}, MAC ratio {r.extra['mac_ratio']:.3f} "
            f"({'meets' if r.extra['meets'] else 'MISSES'} <= {r.extra['bound']:.3f})"
        ),
    )
    low_rank_cases(rounds=args.rounds, on_record=log.add)
    print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())

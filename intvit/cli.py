"""The ``intvit`` command line. Each subcommand parses arguments and calls a typed function in
:mod:`intvit.api`; heavy modules (TVM, torch) are imported only inside the handlers, so
``intvit --help`` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_report(args: argparse.Namespace) -> int:
    from intvit.api.kernel_report import build_report, format_report, write_report

    reports = build_report(progress=not args.quiet)
    print(format_report(reports))
    path = write_report(reports, args.out / "kernel_report.json")
    print(f"\nreport written to {path}")
    if args.bench:
        from intvit.api.kernel_bench import run_kernel_bench
        from intvit.deploy.benchrecord import format_table, machine_info, write_records

        machine = machine_info()
        print(f"\nbenchmark (batch 1, {machine['cpu']}, {machine['threads']} thread(s)):")
        records = run_kernel_bench(batches=(1,), min_repeat_ms=30)
        print(format_table(records))
        print(f"written to {write_records(args.out / 'kernel_bench.json', records, machine)}")
    return 0


def _cmd_kernels(args: argparse.Namespace) -> int:
    from intvit.topi.registry import list_variants

    for v in list_variants(args.op):
        safe = "int32-safe" if v.int32_safe else "int64"
        print(f"{v.op:<10} {v.name:<12} {safe:<11} {v.source}")
    return 0


def _cmd_targets(args: argparse.Namespace) -> int:
    from intvit.deploy.targets import get_preset, list_presets

    for name in list_presets():
        p = get_preset(name)
        print(f"{name:<16} {p.description:<40} {p.target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intvit", description="Integer-only vision transformers compiled with TVM."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    report = sub.add_parser(
        "report", help="kernel report: accuracy vs float, truncation audit (and speed)"
    )
    report.add_argument("--bench", action="store_true", help="also time every kernel vs FP32")
    report.add_argument("--out", type=Path, default=Path("out"), help="folder for the JSON")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(func=_cmd_report)

    kernels = sub.add_parser("kernels", help="list the integer kernel variants")
    kernels.add_argument("--op", choices=["softmax", "gelu", "layernorm"], default=None)
    kernels.set_defaults(func=_cmd_kernels)

    targets = sub.add_parser("targets", help="list the target presets")
    targets.set_defaults(func=_cmd_targets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"intvit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

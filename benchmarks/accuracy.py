"""Benchmark: FP32 vs integer-only top-1 of the zoo models on their built-in data (digits:
500 test images of 8x8 scans at 32x32; MNIST: 500 test images of 28x28), every variant set.

    .venv/bin/python benchmarks/accuracy.py [--models digits_vit,mnist_vit,...]

Writes benchmarks/results/accuracy.json: records with model, variant (``default`` for the
default set), fp32_top1, int_top1, agreement, truncation (per operator, on real activations).
Records of models not run this time are kept from the file's last run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from intvit.api.eval import (
    EvalResult,
    evaluate_variants,
    format_results,
    save_results,
    variant_configs,
)
from intvit.api.quantize import ModelSpec
from intvit.models.zoo import SMALL_CONFIGS

RESULTS = Path(__file__).resolve().parent / "results" / "accuracy.json"
MODELS = ("digits_vit", "digits_deit", "digits_swin", "mnist_vit", "mnist_deit", "mnist_swin")


def _kept(models: list[str]) -> list[EvalResult]:
    """The earlier records of every model this run does not redo."""
    if not RESULTS.is_file():
        return []
    return [
        EvalResult.from_dict(r) for r in json.loads(RESULTS.read_text()) if r["model"] not in models
    ]


def goals(results: list[EvalResult]) -> list[str]:
    """The accuracy goals, one line each: MNIST default within 0.3 points of FP32 with 99.5%
    agreement; digits default at least 98.5% integer top-1."""
    lines = []
    for r in results:
        if r.variant != "default":
            continue
        data = SMALL_CONFIGS[r.model].data if r.model in SMALL_CONFIGS else "?"
        if data == "mnist":
            gap = 100 * (r.fp32_top1 - r.int_top1)
            ok = gap <= 0.3 and r.agreement >= 0.995
            lines.append(
                f"{r.model}: int {100 * r.int_top1:.1f}% vs fp32 {100 * r.fp32_top1:.1f}% "
                f"(gap {gap:+.1f} points, goal <= 0.3), agreement {100 * r.agreement:.1f}% "
                f"(goal >= 99.5): {'met' if ok else 'missed'}"
            )
        elif data == "digits":
            ok = r.int_top1 >= 0.985
            lines.append(
                f"{r.model}: int {100 * r.int_top1:.1f}% (goal >= 98.5): "
                f"{'met' if ok else 'missed'}"
            )
    return lines


def markdown(results: list[EvalResult]) -> str:
    """The README's table: per model, FP32 and the default integer variant's top-1, their
    agreement, and the range of integer top-1 over the other variants (ReLU excluded: it is
    another model, not another kernel)."""
    lines = [
        "| model | data | FP32 top-1 | integer top-1 (default) | agreement | other variants |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys(r.model for r in results):
        rows = [r for r in results if r.model == name]
        default = next((r for r in rows if r.variant == "default"), None)
        if default is None:
            continue
        others = [
            r.int_top1 for r in rows if r.variant != "default" and "gelu=relu" not in r.variant
        ]
        spread = f"{100 * min(others):.1f}-{100 * max(others):.1f}%" if others else "-"
        data = SMALL_CONFIGS[name].data if name in SMALL_CONFIGS else "?"
        lines.append(
            f"| {name} | {data} | {100 * default.fp32_top1:.1f}% | {100 * default.int_top1:.1f}% "
            f"| {100 * default.agreement:.1f}% | {spread} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--markdown", action="store_true", help="only print the README table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown([EvalResult.from_dict(r) for r in json.loads(RESULTS.read_text())]))
        return 0
    models = [m for m in args.models.split(",") if m]
    use_physical_cores()
    results = _kept(models)
    for name in models:
        results += evaluate_variants(ModelSpec(name), variant_configs())
        save_results(results, RESULTS)  # partial results survive an interruption
    print(format_results(results))
    print("\n".join(goals(results)))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

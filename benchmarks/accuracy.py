"""Benchmark: FP32 vs integer-only top-1 on the built-in digits models, every variant set.

    .venv/bin/python benchmarks/accuracy.py

Writes benchmarks/results/accuracy.json: records with model, variant (``default`` for the
default set), fp32_top1, int_top1, agreement, truncation (per operator, on real activations).
"""

from __future__ import annotations

import sys
from pathlib import Path

from intvit.api.model_eval import (
    ModelSpec,
    evaluate_variants,
    format_results,
    save_results,
    variant_configs,
)

RESULTS = Path(__file__).resolve().parent / "results" / "accuracy.json"
MODELS = ("digits_vit", "digits_deit", "digits_swin")


def main() -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    results = []
    for name in MODELS:
        results += evaluate_variants(ModelSpec(name), variant_configs())
        save_results(results, RESULTS)  # partial results survive an interruption
    print(format_results(results))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

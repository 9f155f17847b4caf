"""The kernel report: every variant's contract, accuracy against float and truncation ratio.

This is the project's main job on its embedded default: it needs no device, data or download.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intvit.topi.accuracy import DISTRIBUTIONS, MEASURES
from intvit.topi.registry import KernelVariant, list_variants
from intvit.topi.truncation import TruncationReport, truncation_audit


@dataclass(frozen=True)
class AuditCase:
    """An op's realistic *wide* integer input for the truncation audit (seed 001 Table 1 runs
    the kernels on the int32 tensors a quantized DeiT feeds them): ``|q| < 2**bits`` in rows
    of ``width``, and the variant's constants for it."""

    desc: str
    bits: int
    width: int
    params: Callable[[KernelVariant], object]


AUDIT_CASES = {
    "softmax": AuditCase(
        "int32 attention logits, |q| < 2**14, S = 1e-3", 14, 197,
        lambda v: v.make_params(1e-3, 197),
    ),
    "gelu": AuditCase(
        "int32 GEMM output, |q| < 2**22, S = 6/2**22", 22, 3072,
        lambda v: v.make_params(6 / 2**22, 6 / 127, in_bits=22, acc_bits=64),
    ),
    "layernorm": AuditCase(
        "int32 residual stream, |q| < 2**24", 24, 768,
        lambda v: v.make_params(768, in_bits=24),
    ),
}  # fmt: skip


@dataclass
class VariantReport:
    variant: KernelVariant
    accuracy: dict[str, tuple[float, float]]
    truncation: TruncationReport | None
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "op": self.variant.op,
            "variant": self.variant.name,
            "int32_safe": self.variant.int32_safe,
            "source": self.variant.source,
            "accuracy_lsb": {d: {"max": a[0], "mean": a[1]} for d, a in self.accuracy.items()},
            "truncation": None if self.truncation is None else self.truncation.as_dict(),
            "note": self.note,
        }


def audit_variant(v: KernelVariant, seed: int = 0) -> tuple[TruncationReport | None, str]:
    case = AUDIT_CASES[v.op]
    rng = np.random.default_rng(seed)
    q = rng.integers(-(2**case.bits), 2**case.bits, (8, case.width)).astype(np.int32)
    try:
        params = case.params(v)
    except ValueError as err:  # the variant cannot take this input at all: say so
        return None, f"not applicable to {case.desc}: {err}"
    return truncation_audit(v.op, v.name, v.reference, q, params), case.desc


def build_report(progress: bool = True) -> list[VariantReport]:
    variants = list_variants()
    iterator = variants
    if progress:
        from tqdm import tqdm

        iterator = tqdm(variants, desc="kernels", unit="variant")
    reports = []
    for v in iterator:
        accuracy = {}
        for dist in DISTRIBUTIONS:
            r = MEASURES[v.op](v.name, dist)
            accuracy[dist] = (r.max_lsb, r.mean_lsb)
        trunc, note = audit_variant(v)
        reports.append(VariantReport(v, accuracy, trunc, note))
    return reports


def format_report(reports: list[VariantReport]) -> str:
    head = (
        f"{'op':<10}{'variant':<13}{'int32':<7}{'gauss max/mean':>16}{'heavy max/mean':>16}"
        f"{'trunc %':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in reports:
        g, h = r.accuracy["gaussian"], r.accuracy["heavy_tailed"]
        trunc = "n/a" if r.truncation is None else f"{100 * r.truncation.ratio:.2f}"
        lines.append(
            f"{r.variant.op:<10}{r.variant.name:<13}{'yes' if r.variant.int32_safe else 'no':<7}"
            f"{g[0]:>9.2f}/{g[1]:<6.3f}{h[0]:>9.2f}/{h[1]:<6.3f}{trunc:>9}"
        )
    lines.append("accuracy: output LSBs vs float; trunc: share of outputs that differ between")
    lines.append(
        "int32 and int64 intermediates on wide int32 inputs (MLSys'23 edge kernels, Table 1)."
    )
    return "\n".join(lines)


def write_report(reports: list[VariantReport], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_dict() for r in reports], indent=2) + "\n")
    return path

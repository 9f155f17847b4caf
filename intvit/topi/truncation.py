"""The truncation audit (seed 001, Table 1).

A kernel's reference is run twice on the same input: with int64 intermediates (exact) and
with int32 intermediates (wrapping, as an int32-only device computes). The truncation ratio is
the share of output elements that differ: where an int32 product or left shift overflowed, or
a division truncated to 0, and the error reached the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TruncationReport:
    op: str
    variant: str
    elements: int
    truncated: int
    max_abs_diff: int

    @property
    def ratio(self) -> float:
        return self.truncated / self.elements if self.elements else 0.0

    def as_dict(self) -> dict:
        return {
            "op": self.op,
            "variant": self.variant,
            "elements": self.elements,
            "truncated": self.truncated,
            "ratio": self.ratio,
            "max_abs_diff": self.max_abs_diff,
        }


def truncation_audit(op: str, variant: str, reference, q: np.ndarray, params) -> TruncationReport:
    """Compare ``reference(q, params, acc_bits=64)`` with ``acc_bits=32`` elementwise."""
    with np.errstate(all="ignore"):  # int32 wrap-around and x // 0 are what is measured
        exact = reference(q, params, 64).astype(np.int64)
        narrow = reference(q, params, 32).astype(np.int64)
    diff = np.abs(exact - narrow)
    return TruncationReport(
        op, variant, int(exact.size), int(np.count_nonzero(diff)), int(diff.max(initial=0))
    )

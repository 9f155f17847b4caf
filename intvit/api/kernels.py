"""``intvit kernels``: the registered integer kernel variants, with the paper each comes
from."""

from __future__ import annotations


def format_kernels(op: str | None = None) -> str:
    """One line per variant of ``op`` (every op when None): op, name, whether its arithmetic
    stays in int32, and its source."""
    from intvit.topi.registry import list_variants

    lines = []
    for v in list_variants(op):
        safe = "int32-safe" if v.int32_safe else "int64"
        lines.append(f"{v.op:<10} {v.name:<12} {safe:<11} {v.source}")
    return "\n".join(lines)

"""TE integer primitives, the compiled twins of :mod:`intvit.topi.intops_ref`.

Each helper builds a ``tvm.tirx`` expression; constants are typed to the accumulator dtype so
that int32 kernels never widen silently.
"""

from __future__ import annotations

from tvm import tirx

from intvit.topi.contract import check_choice


def acc_dtype(acc_bits: int) -> str:
    check_choice("acc_bits", acc_bits, (32, 64))
    return f"int{acc_bits}"


def dtype_of(expr: tirx.PrimExpr) -> str:
    """The dtype string of an expression (``"int32"``...)."""
    return str(expr.ty)


def const(value: int, dtype: str) -> tirx.PrimExpr:
    return tirx.const(int(value), dtype)


def shift_right_round(x: tirx.PrimExpr, s: int, dtype: str) -> tirx.PrimExpr:
    """``(x + 2**(s-1)) >> s`` for a compile-time ``s >= 0`` (round half up)."""
    if s == 0:
        return x
    return (x + const(1 << (s - 1), dtype)) >> const(s, dtype)


def shift_right_round_var(x: tirx.PrimExpr, s: tirx.PrimExpr, dtype: str) -> tirx.PrimExpr:
    """Rounding right shift by a run-time amount ``s >= 0``."""
    one = const(1, dtype)
    half = tirx.Select(s > 0, one << tirx.max(s - one, const(0, dtype)), const(0, dtype))
    return (x + half) >> s


def clamp(x: tirx.PrimExpr, lo: int, hi: int) -> tirx.PrimExpr:
    return tirx.max(tirx.min(x, const(hi, dtype_of(x))), const(lo, dtype_of(x)))


def bit_length(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``int.bit_length`` of a non-negative value, via count-leading-zeros."""
    bits = int(dtype_of(x)[3:])
    return tirx.Select(
        x > 0, const(bits, dtype_of(x)) - tirx.clz(x).astype(dtype_of(x)), const(0, dtype_of(x))
    )


def div_round_half_even(num: tirx.PrimExpr, den: int) -> tirx.PrimExpr:
    """``round(num / den)``, ties to even, for a compile-time ``den > 0``."""
    d = const(den, dtype_of(num))
    q = tirx.floordiv(num, d)
    twice = (num - q * d) * const(2, dtype_of(num))
    up = tirx.Or(twice > d, tirx.And(twice == d, tirx.floormod(q, const(2, dtype_of(num))) == 1))
    return q + up.astype(dtype_of(num))

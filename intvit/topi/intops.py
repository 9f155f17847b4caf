"""TE integer primitives, the compiled twins of :mod:`intvit.topi.intops_ref`.

Each helper builds a ``tvm.tirx`` expression; constants are typed to the accumulator dtype so
that int32 kernels never widen silently.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
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


def consts(dtype: str) -> Callable[[int], tirx.PrimExpr]:
    """``const`` bound to ``dtype``: ``c = consts("int32"); c(7)``."""
    return functools.partial(const, dtype=dtype)


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
    return div_round_half_even_var(num, const(den, dtype_of(num)))


def shift_right_half_even_var(x: tirx.PrimExpr, s: tirx.PrimExpr) -> tirx.PrimExpr:
    """``round(x / 2**s)``, ties to even, for int64 ``0 <= x < 2**63`` and a run-time ``s >=
    1`` (``s >= 64`` gives 0); the shift is capped at 63 so that no shift is undefined."""
    dtype = dtype_of(x)
    c = consts(dtype)
    capped = tirx.min(s, c(63))
    q = x >> capped
    rest = x - (q << capped)
    half = c(1) << (capped - c(1))
    up = tirx.Or(rest > half, tirx.And(rest == half, (q & c(1)) == c(1)))
    return tirx.Select(s >= c(64), c(0), q + up.astype(dtype))


def div_round_half_even_var(num: tirx.PrimExpr, den: tirx.PrimExpr) -> tirx.PrimExpr:
    """``round(num / den)``, ties to even, for a runtime ``den > 0`` (``2 * den`` fits)."""
    dtype = dtype_of(num)
    q = tirx.floordiv(num, den)
    twice = (num - q * den) * const(2, dtype)
    up = tirx.Or(twice > den, tirx.And(twice == den, tirx.floormod(q, const(2, dtype)) == 1))
    return q + up.astype(dtype)


#: Largest numerator range that :func:`magic_divisor` checks value by value.
MAGIC_CHECK_LIMIT = 1 << 22


@functools.lru_cache(maxsize=256)
def magic_divisor(divisor: int, top: int) -> tuple[int, int] | None:
    """``(m, s)`` with ``(y * m) >> s == y // divisor`` for every ``0 <= y <= top`` and ``top *
    m < 2**31`` (an int32 multiply and shift instead of a division), checked for each ``y``;
    None when no such pair exists (or the range is too large to check)."""
    if divisor <= 0 or top < 0 or top >= MAGIC_CHECK_LIMIT:
        return None
    y = np.arange(top + 1, dtype=np.int64)
    want = y // divisor
    for shift in range(31, -1, -1):
        m = -(-(1 << shift) // divisor)
        if top * m >= 2**31:
            continue
        if np.array_equal((y * m) >> shift, want):
            return m, shift
        return None  # the largest usable shift is the most precise: smaller ones fail too
    return None


def floordiv_const(x: tirx.PrimExpr, divisor: int, lo: int, hi: int) -> tirx.PrimExpr:
    """``floor(x / divisor)`` for an int32 ``x`` known to lie in ``[lo, hi]`` and on one side
    of zero (the divisor's side, or the other): a multiply and a shift (:func:`magic_divisor`)
    where one is exact over the range, else the division. An integer exp's range reduction
    (``x // x0``, ``x <= 0``, ``x0 < 0``) vectorizes as a division emulated with 64-bit
    multiplies on AVX2; this is two int32 instructions."""
    dtype = dtype_of(x)
    if dtype == "int32" and divisor != 0:
        negate = divisor < 0 and hi <= 0
        if negate or (divisor > 0 and lo >= 0):
            magic = magic_divisor(abs(divisor), -lo if negate else hi)
            if magic is not None:
                m, s = magic
                y = -x if negate else x
                return (y * const(m, dtype)) >> const(s, dtype)
    return tirx.floordiv(x, const(divisor, dtype))

"""NumPy integer primitives every reference kernel is written with.

``acc_bits`` selects the width of intermediates: 64 is exact for every kernel here; 32 is
what an int32-only device computes, two's-complement wrap-around included (NumPy wraps int32
arrays silently), so a reference run at 32 bits shows what truncation does to a kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from intvit.topi.contract import check_choice


def acc_dtype(acc_bits: int) -> type[np.integer]:
    check_choice("acc_bits", acc_bits, (32, 64))
    return np.int32 if acc_bits == 32 else np.int64


def as_acc(x: np.ndarray, acc_bits: int) -> np.ndarray:
    """Cast to the accumulator type (wrapping, as a device register would)."""
    return np.asarray(x).astype(np.int64).astype(acc_dtype(acc_bits))


def const(value: int | np.ndarray, acc_bits: int) -> np.ndarray:
    """A compile-time constant in the accumulator type (wrapped to int32 at 32 bits)."""
    return np.asarray(value, dtype=np.int64).astype(acc_dtype(acc_bits))


def consts(acc_bits: int) -> Callable[[int | np.ndarray], np.ndarray]:
    """``const`` bound to ``acc_bits``: ``c = consts(32); c(7)``."""
    return functools.partial(const, acc_bits=acc_bits)


def shift_right_round(x: np.ndarray, s: int | np.ndarray, acc_bits: int) -> np.ndarray:
    """``(x + 2**(s-1)) >> s``: round half up; identity where ``s == 0``."""
    s_arr = np.asarray(s, dtype=np.int64)
    half = np.where(s_arr > 0, np.left_shift(np.int64(1), np.maximum(s_arr - 1, 0)), 0)
    return (x + const(half, acc_bits)) >> const(s_arr, acc_bits)


def clamp(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.minimum(np.maximum(x, np.asarray(lo, dtype=x.dtype)), np.asarray(hi, dtype=x.dtype))


def bit_length(x: np.ndarray) -> np.ndarray:
    """Exact ``int.bit_length`` of non-negative integers, elementwise (int64 result)."""
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros(x.shape, dtype=np.int64)
    for j in range(63):
        out += (x >= (np.int64(1) << j)).astype(np.int64)
    return out


def div_round_half_even_var(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``round(num / den)``, ties to even, for per-element ``den > 0`` (``2 * den`` must fit
    the dtype)."""
    q = num // den
    twice = 2 * (num - q * den)
    up = (twice > den) | ((twice == den) & ((q & 1) == 1))
    return q + up.astype(q.dtype)


def shift_right_half_even_var(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``round(x / 2**s)``, ties to even, for int64 ``0 <= x < 2**63`` and per-element
    ``s >= 1`` (``s >= 64`` gives 0: ``x < 2**(s-1)``)."""
    s = np.asarray(s, dtype=np.int64)
    capped = np.minimum(s, 63)
    q = x >> capped
    rest = x - (q << capped)
    half = np.left_shift(np.int64(1), capped - 1)
    up = (rest > half) | ((rest == half) & ((q & 1) == 1))
    return np.where(s >= 64, np.int64(0), q + up.astype(q.dtype))


def div_round_half_even(num: np.ndarray, den: int) -> np.ndarray:
    """``round(num / den)`` with ties to even (``torch.round``), integers only, ``den > 0``."""
    return div_round_half_even_var(num, den)

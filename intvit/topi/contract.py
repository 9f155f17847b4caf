"""Validation shared by every kernel: bad input raises ``ValueError`` naming the parameter.

Kernels are compiled once per (shape, constants) pair, so these checks run at build time,
never per element.
"""

from __future__ import annotations

from collections.abc import Iterable

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
INT64_MAX = 2**63 - 1

#: Accumulator widths a kernel may compute its intermediates in.
ACC_BITS = (32, 64)


def check_choice(name: str, value: object, allowed: Iterable[object]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not supported; allowed: {', '.join(map(repr, allowed))}"
        )


def check_int_range(name: str, value: int, lo: int, hi: int) -> None:
    """Require ``lo <= value <= hi`` for an integer parameter."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is out of range; allowed [{lo}, {hi}]")


def check_scale(name: str, scale: float, lo: float = 1e-12, hi: float = 1e12) -> None:
    """A quantization scale must be a finite positive float in a sane range."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive float, got {scale!r}") from None
    if not (lo <= value <= hi):
        raise ValueError(f"{name}={scale!r} is out of range; allowed [{lo:g}, {hi:g}]")


def check_fits(name: str, value: int, acc_bits: int) -> None:
    """A compile-time constant must fit a signed ``acc_bits`` integer."""
    lim = 2 ** (acc_bits - 1)
    if not -lim <= value < lim:
        raise ValueError(
            f"constant {name}={value} does not fit int{acc_bits} (allowed [{-lim}, {lim - 1}]); "
            "the input scale is too small for this kernel variant"
        )


def check_dtype(name: str, dtype: str, allowed: Iterable[str]) -> None:
    check_choice(f"{name}.dtype", str(dtype), allowed)


def check_rank(name: str, shape: tuple[int, ...], min_rank: int = 1, max_rank: int = 4) -> None:
    if not min_rank <= len(shape) <= max_rank:
        raise ValueError(f"{name} has rank {len(shape)}; allowed ranks {min_rank}..{max_rank}")
    for dim in shape:
        if int(dim) < 1:
            raise ValueError(f"{name} has shape {tuple(shape)}; every dimension must be >= 1")


def check_axis(name: str, axis: int, rank: int) -> int:
    """Only the innermost axis is a supported reduction axis (rows are contiguous)."""
    if axis not in (-1, rank - 1):
        raise ValueError(f"{name}={axis} is not supported; only the last axis (-1) is")
    return rank - 1

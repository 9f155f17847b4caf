"""TE computes of integer square roots; spec: :mod:`intvit.topi.sqrt_ref`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tvm import te, tirx

from intvit.topi.contract import check_choice, check_int_range
from intvit.topi.intops import acc_dtype, bit_length, const
from intvit.topi.sqrt_ref import converge_iters


def _bit_length_start(n: te.Tensor, dtype: str):
    """``2**ceil(bits(n - 1) / 2)``: at or above ``sqrt(n)``, where Newton's steps descend."""
    one, zero = const(1, dtype), const(0, dtype)

    def start(*i):
        p = bit_length(tirx.max(n(*i).astype(dtype) - one, zero))
        return one << ((p + one) >> one)

    return start


def _ivit_start(n: te.Tensor, dtype: str):
    """I-ViT's fixed first estimate, ``2**16``."""
    return lambda *i: const(1 << 16, dtype)


def _plain_step(cur, n, dtype: str):
    """I-ViT's step on ``n`` itself; ``x >= 64`` for ``n >= 0``, the guard is for ``n < 0``."""
    one = const(1, dtype)
    return (cur + tirx.floordiv(n.astype(dtype), tirx.max(cur, one))) >> one


def _fixed_step(cur, n, dtype: str):
    """A step on ``max(n, 1)``, at least 1 (MCUFormer's fixed count of steps)."""
    one = const(1, dtype)
    return tirx.max((cur + tirx.floordiv(tirx.max(n.astype(dtype), one), cur)) >> one, one)


def _converging_step(cur, n, dtype: str):
    """A fixed step that keeps the minimum: from above, it stops at the floor square root."""
    return tirx.min(cur, _fixed_step(cur, n, dtype))


@dataclass(frozen=True)
class SqrtMethod:
    """An integer square root: its first estimate, its Newton step, how many steps (from
    the caller's ``iters`` and the accumulator bits), and whether ``n <= 0`` maps to 0."""

    start: Callable
    step: Callable
    steps: Callable[[int | None, int], int]
    zero_for_non_positive: bool


def _fixed_steps(iters: int | None, acc_bits: int) -> int:
    if iters is None:
        raise ValueError("variant='newton_fixed' needs iters (MCUFormer's t)")
    check_int_range("iters", iters, 1, 64)
    return iters


SQRT_METHODS = {
    "newton": SqrtMethod(
        _bit_length_start, _converging_step, lambda _, bits: converge_iters(bits), True
    ),
    "newton_fixed": SqrtMethod(_bit_length_start, _fixed_step, _fixed_steps, True),
    "ivit": SqrtMethod(_ivit_start, _plain_step, lambda _, __: 10, False),
}
SQRT_VARIANTS = tuple(SQRT_METHODS)


def _stepped(method: SqrtMethod, x: te.Tensor, n: te.Tensor, dtype: str):
    """The fcompute of one of ``method``'s steps from the estimate ``x``."""
    return lambda *i: method.step(x(*i), n(*i), dtype)


def isqrt(n: te.Tensor, variant: str = "newton", iters: int | None = None, acc_bits: int = 64):
    """Elementwise integer square root of a non-negative int32/int64 tensor.

    Output has the accumulator dtype (``int{acc_bits}``). Each Newton step is its own stage:
    a step reads its input twice, so fusing the steps into one expression would grow it as
    ``2**steps``.
    """
    check_choice("variant", variant, SQRT_VARIANTS)
    method = SQRT_METHODS[variant]
    dtype = acc_dtype(acc_bits)
    steps = method.steps(iters, acc_bits)
    x = te.compute(n.shape, method.start(n, dtype), name="isqrt_start")
    for step in range(steps):
        x = te.compute(n.shape, _stepped(method, x, n, dtype), name=f"isqrt_step{step}")
    if not method.zero_for_non_positive:
        return x
    zero = const(0, dtype)
    return te.compute(
        n.shape, lambda *i: tirx.Select(n(*i) > 0, x(*i), zero), name=f"isqrt_{variant}"
    )

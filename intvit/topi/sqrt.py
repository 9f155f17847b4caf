"""TE computes of integer square roots; spec: :mod:`intvit.topi.sqrt_ref`."""

from __future__ import annotations

from tvm import te, tirx

from intvit.topi.contract import check_choice, check_int_range
from intvit.topi.intops import acc_dtype, bit_length, const
from intvit.topi.sqrt_ref import converge_iters

SQRT_VARIANTS = ("newton", "newton_fixed", "ivit")


def isqrt(n: te.Tensor, variant: str = "newton", iters: int | None = None, acc_bits: int = 64):
    """Elementwise integer square root of a non-negative int32/int64 tensor.

    Output has the accumulator dtype (``int{acc_bits}``). Each Newton step is its own stage:
    a step reads its input twice, so fusing the steps into one expression would grow it as
    ``2**steps``.
    """
    check_choice("variant", variant, SQRT_VARIANTS)
    dtype = acc_dtype(acc_bits)
    one, zero = const(1, dtype), const(0, dtype)
    if variant == "newton_fixed":
        if iters is None:
            raise ValueError("variant='newton_fixed' needs iters (MCUFormer's t)")
        check_int_range("iters", iters, 1, 64)
    if variant == "ivit":
        x = te.compute(n.shape, lambda *i: const(1 << 16, dtype), name="isqrt_start")
        for step in range(10):
            x = te.compute(n.shape, _newton_step(n, x, dtype, "plain"), name=f"isqrt_step{step}")
        return x

    def start(*i):
        p = bit_length(tirx.max(n(*i).astype(dtype) - one, zero))
        return one << ((p + one) >> one)

    converge = variant == "newton"
    x = te.compute(n.shape, start, name="isqrt_start")
    mode = "converge" if converge else "fixed"
    for step in range(converge_iters(acc_bits) if converge else iters):
        x = te.compute(n.shape, _newton_step(n, x, dtype, mode), name=f"isqrt_step{step}")
    return te.compute(
        n.shape, lambda *i: tirx.Select(n(*i) > 0, x(*i), zero), name=f"isqrt_{variant}"
    )


def _newton_step(n: te.Tensor, x: te.Tensor, dtype: str, mode: str):
    """One step ``(x + n // x) >> 1``; ``converge`` keeps the minimum (stops at the floor)."""
    one = const(1, dtype)

    def body(*i):
        cur = x(*i)
        if mode == "plain":  # I-ViT: n itself; x >= 64 for n >= 0, the guard is for n < 0 only
            return (cur + tirx.floordiv(n(*i).astype(dtype), tirx.max(cur, one))) >> one
        nxt = (cur + tirx.floordiv(tirx.max(n(*i).astype(dtype), one), cur)) >> one
        return tirx.max(tirx.min(cur, nxt) if mode == "converge" else nxt, one)

    return body

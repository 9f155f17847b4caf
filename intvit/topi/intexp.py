"""TE integer exponentials; spec: :mod:`intvit.topi.intexp_ref`."""

from __future__ import annotations

from tvm import tirx

from intvit.topi.intops import consts, dtype_of, floordiv_const


def shift_exp(x: tirx.PrimExpr, x0: int, n: int, max_shift: int | None = None) -> tirx.PrimExpr:
    """I-ViT ShiftExp of one element; see :func:`intvit.topi.intexp_ref.shift_exp`."""
    dtype = dtype_of(x)
    c = consts(dtype)
    x = x + (x >> c(1)) - (x >> c(4))
    x = tirx.max(x, c(n * x0))
    q = tirx.floordiv(x, c(x0))
    r = x - c(x0) * q
    shift = c(n) - q
    if max_shift is not None:
        shift = tirx.min(shift, c(max_shift))
    out = ((r - c(2 * x0)) << shift) >> c(1)
    if max_shift is not None and dtype == "int64":
        out = tirx.min(out, c(2**31 - 1))
    return tirx.max(out, c(0))


def poly_exp_terms(
    x: tirx.PrimExpr, x0: int, b_int: int, c_int: int, n: int, x_range=None
) -> tuple[tirx.PrimExpr, tirx.PrimExpr]:
    """I-BERT range reduction and polynomial; returns ``(z, q)``. ``x_range``: bounds ``(lo,
    hi)`` the caller guarantees for ``x`` (the division then may become a multiply-shift)."""
    dtype = dtype_of(x)
    c = consts(dtype)
    x = tirx.max(x, c(n * x0))
    if x_range is None:
        q = tirx.floordiv(x, c(x0))
    else:
        q = floordiv_const(x, x0, max(x_range[0], n * x0), x_range[1])
    r = x - c(x0) * q
    return r * (r + c(b_int)) + c(c_int), q

"""TE computes of the residual add and the token/layout ops; spec: :mod:`residual_ref`."""

from __future__ import annotations

from tvm import te, tirx

from intvit.topi.intops import clamp
from intvit.topi.requantize import ChannelTables, requantize_expr
from intvit.topi.requantize_params import RequantParams


def residual_add(
    x: te.Tensor,
    acc: te.Tensor,
    skip: RequantParams,
    branch: RequantParams,
    lo: int,
    hi: int,
    branch_tables: ChannelTables | None = None,
) -> te.Tensor:
    """int32 residual ``x`` plus int32 accumulator ``acc``, both requantized, saturated."""

    def body(*i):
        a = requantize_expr(x(*i), i[-1], skip).astype("int64")
        b = requantize_expr(acc(*i), i[-1], branch, branch_tables).astype("int64")
        return clamp(a + b, lo, hi).astype("int32")

    return te.compute(x.shape, body, name="residual_add")


def add_tokens(x: te.Tensor, prefix: te.Tensor, pos: te.Tensor, lo: int, hi: int) -> te.Tensor:
    """``clamp(concat(prefix, x) + pos)`` for ``x [B, N, D]``, ``prefix [1, P, D]``,
    ``pos [1, P + N, D]`` (all int32)."""
    b, n, d = (int(s) for s in x.shape)
    p = int(prefix.shape[1])

    def body(bi, t, c):
        tok = tirx.Select(t < p, prefix[0, tirx.min(t, p - 1), c], x[bi, tirx.max(t - p, 0), c])
        return clamp(tok.astype("int64") + pos[0, t, c].astype("int64"), lo, hi).astype("int32")

    return te.compute((b, p + n, d), body, name="add_tokens")


def im2col(q: te.Tensor, patch: int) -> te.Tensor:
    b, c, h, w = (int(s) for s in q.shape)
    gw = w // patch

    def body(bi, t, k):
        ci, rem = k // (patch * patch), k % (patch * patch)
        return q[bi, ci, (t // gw) * patch + rem // patch, (t % gw) * patch + rem % patch]

    return te.compute((b, (h // patch) * gw, c * patch * patch), body, name="im2col")


def windows(x: te.Tensor, grid: int, ws: int, shift: int) -> te.Tensor:
    """Swin window partition after a cyclic shift by ``-shift`` (a gather)."""
    b, _, c = (int(s) for s in x.shape)
    nw = grid // ws

    def body(w, t, ch):
        bi, wi = w // (nw * nw), w % (nw * nw)
        row = ((wi // nw) * ws + t // ws + shift) % grid
        col = ((wi % nw) * ws + t % ws + shift) % grid
        return x[bi, row * grid + col, ch]

    return te.compute((b * nw * nw, ws * ws, c), body, name="windows")


def unwindows(x: te.Tensor, grid: int, ws: int, shift: int) -> te.Tensor:
    """The inverse of :func:`windows` (window reverse, then the cyclic shift back)."""
    nwin, _, c = (int(s) for s in x.shape)
    nw = grid // ws
    b = nwin // (nw * nw)

    def body(bi, tok, ch):
        row = (tok // grid - shift + grid) % grid
        col = (tok % grid - shift + grid) % grid
        w = bi * nw * nw + (row // ws) * nw + col // ws
        return x[w, (row % ws) * ws + col % ws, ch]

    return te.compute((b, grid * grid, c), body, name="unwindows")

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
    """int32 residual ``x`` plus int32 accumulator ``acc``, both requantized, saturated
    (``skip`` per tensor, ``branch`` per tensor or per channel with ``branch_tables``)."""
    if skip.channels != 1:
        raise ValueError("the skip requantization of a residual add is per tensor")

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

    def unshift(v):
        # v - shift wrapped into [0, grid) with a select: the nested-floormod form
        # ``((t % g + g - s) % g) // w`` compiled to wrong indices with TVM 0.27 (seen here)
        return tirx.Select(v >= shift, v - shift, v - shift + grid)

    def body(bi, tok, ch):
        row = unshift(tok // grid)
        col = unshift(tok % grid)
        w = bi * nw * nw + (row // ws) * nw + col // ws
        return x[w, (row % ws) * ws + col % ws, ch]

    return te.compute((b, grid * grid, c), body, name="unwindows")


def split_heads(qkv: te.Tensor, heads: int) -> list[te.Tensor]:
    """One pass over the fused q/k/v projection ``[B, N, 3*D]`` -> ``q``, ``k`` ``[B*heads,
    N, d]`` and ``v`` transposed ``[B*heads, d, N]`` (the layouts of the two attention
    matmuls); spec: :func:`intvit.topi.residual_ref.split_heads_ref`."""
    b, n, three_d = (int(s) for s in qkv.shape)
    d = three_d // 3 // heads

    def part(j):
        return lambda g, t, c: qkv[g // heads, t, j * heads * d + (g % heads) * d + c]

    q = te.compute((b * heads, n, d), part(0), name="split_q")
    k = te.compute((b * heads, n, d), part(1), name="split_k")
    v = te.compute((b * heads, d, n), lambda g, c, t: part(2)(g, t, c), name="split_vt")
    return [q, k, v]


def token_sum(x: te.Tensor) -> te.Tensor:
    """Sum over the token axis of ``[B, N, D]`` in int32."""
    k = te.reduce_axis((0, x.shape[1]), name="tok")
    return te.compute(
        (x.shape[0], x.shape[2]),
        lambda b, c: te.sum(x[b, k, c].astype("int32"), axis=k),
        name="token_sum",
    )


def window_scores(acc, bias, mask, nw: int, heads: int, n: int, rq: RequantParams, masked: int):
    """Swin: ``acc [B*nw*heads, n, n]`` + ``bias [heads, n, n]`` (int64 sum), requantized to int8
    and widened to int32; where ``mask [nw, n, n]`` is set, ``masked``."""

    def body(w, i, j):
        head = w % heads
        win = (w // heads) % nw
        total = acc[w, i, j].astype("int64") + bias[head, i, j].astype("int64")
        y = requantize_expr(total, 0, rq).astype("int32")
        if mask is None:
            return y
        return tirx.Select(mask[win, i, j] != 0, tirx.const(masked, "int32"), y)

    return te.compute(acc.shape, body, name="window_scores")

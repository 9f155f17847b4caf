"""TE compute of dyadic requantization; spec: :func:`intvit.topi.requantize_ref.requantize_ref`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from intvit.topi.intops import clamp, const, dtype_of, shift_right_round
from intvit.topi.requantize_params import RequantParams


@dataclass
class ChannelTables:
    """Per-channel ``m``, ``s``, ``bias`` as kernel inputs (placeholders and their values).

    A compiled kernel with per-channel constants takes these tensors after its data inputs,
    in the order of :attr:`tensors`; :meth:`arrays` gives the matching NumPy values.
    """

    m: te.Tensor
    s: te.Tensor
    bias: te.Tensor
    params: RequantParams
    #: further per-channel inputs of the kernel (a LayerNorm's fine-scale beta): tensors
    #: after ``bias``, with their values
    extra: tuple[tuple[te.Tensor, np.ndarray], ...] = ()

    @classmethod
    def create(
        cls, params: RequantParams, name: str, extra: dict[str, np.ndarray] | None = None
    ) -> ChannelTables:
        dtype = params.table_dtype
        n = params.channels
        more = tuple(
            (te.placeholder((n,), str(v.dtype), name=f"{name}_{k}"), v)
            for k, v in (extra or {}).items()
        )
        return cls(
            m=te.placeholder((n,), dtype, name=f"{name}_m"),
            s=te.placeholder((n,), dtype, name=f"{name}_s"),
            bias=te.placeholder((n,), dtype, name=f"{name}_bias"),
            params=params,
            extra=more,
        )

    @property
    def tensors(self) -> list[te.Tensor]:
        return [self.m, self.s, self.bias, *(t for t, _ in self.extra)]

    def arrays(self) -> list[np.ndarray]:
        n = self.params.channels
        dtype = self.params.table_dtype
        base = [np.broadcast_to(a, (n,)).astype(dtype) for a in self.params.arrays()]
        return base + [np.ascontiguousarray(v) for _, v in self.extra]


def requantize_expr(
    x: tirx.PrimExpr,
    channel: tirx.PrimExpr,
    params: RequantParams,
    tables: ChannelTables | None = None,
) -> tirx.PrimExpr:
    """The requantization of one element ``x`` of output channel ``channel``."""
    if params.high_word_form and int(dtype_of(x)[3:]) <= 32:
        return _requantize_high_word(x, channel, params, tables)
    dtype = "int32" if params.int32_form else f"int{params.product_bits}"
    v = shift_right_round(x.astype(dtype), params.p, dtype)
    lo, hi = params.out_range
    if tables is None:
        if params.channels != 1:
            raise ValueError("per-channel requantize parameters need ChannelTables")
        y = shift_right_round(v * const(params.m[0], dtype), params.s[0], dtype)
        y = y + const(params.bias[0], dtype)
    else:
        # tables may be int32 (high-word form) while this input is wider: widen them
        m, s, bias = (t[channel].astype(dtype) for t in (tables.m, tables.s, tables.bias))
        one = const(1, dtype)
        half = tirx.Select(s > 0, one << tirx.max(s - one, const(0, dtype)), const(0, dtype))
        y = ((v * m + half) >> s) + bias
    return clamp(y, lo, hi).astype(params.out_dtype)


def _requantize_high_word(x, channel, params: RequantParams, tables: ChannelTables | None):
    """The int64 requantization of an int32 ``x`` computed from the high word of ``x * m``
    (exact: see :attr:`RequantParams.high_word_form`)."""
    if tables is None:
        if params.channels != 1:
            raise ValueError("per-channel requantize parameters need ChannelTables")
        m, s, bias = (const(v[0], "int32") for v in (params.m, params.s, params.bias))
    else:
        m, s, bias = tables.m[channel], tables.s[channel], tables.bias[channel]
    high = ((x.astype("int32").astype("int64") * m.astype("int64")) >> 32).astype("int32")
    one = const(1, "int32")
    y = ((high + (one << (s - 33))) >> (s - 32)) + bias
    lo, hi = params.out_range
    return clamp(y, lo, hi).astype(params.out_dtype)


def requantize(
    q: te.Tensor,
    params: RequantParams,
    name: str = "requantize",
    tables: ChannelTables | None = None,
) -> tuple[te.Tensor, ChannelTables | None]:
    """Requantize ``q`` (int8/int16/int32) to ``params.out_dtype``; constants per last axis.

    Returns the output and, for per-channel parameters, the tables the kernel takes as inputs
    (new placeholders, or ``tables`` when the caller supplies its own tensors).
    """
    if tables is None and params.channels > 1:
        tables = ChannelTables.create(params, name)
    out = te.compute(q.shape, lambda *i: requantize_expr(q(*i), i[-1], params, tables), name=name)
    return out, tables

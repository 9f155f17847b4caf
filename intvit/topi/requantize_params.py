"""Constants of a dyadic requantization, computed once from float scales."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from intvit.topi.contract import check_choice, check_int_range
from intvit.topi.dyadic import Dyadic

#: Output integer ranges by dtype.
DTYPE_RANGE = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
}


@dataclass(frozen=True)
class RequantParams:
    """``out = clamp(((q >> p, rounded) * m + 2**(s-1)) >> s) + bias, lo, hi)``.

    ``m``, ``s`` and ``bias`` are per output channel (last axis) or length-1 (per tensor).
    ``product_bits=64`` multiplies in int64 (``p = 0``, ``m`` up to 31 bits);
    ``product_bits=32`` is the int32-only split-shift form: the input is pre-shifted by ``p``
    so that ``|q >> p| * |m| + 2**(s-1) < 2**31`` for every input with ``|q| <= 2**in_bits``.
    """

    m: tuple[int, ...]
    s: tuple[int, ...]
    p: int
    product_bits: int
    in_bits: int
    out_dtype: str
    bias: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        check_choice("product_bits", self.product_bits, (32, 64))
        check_choice("out_dtype", self.out_dtype, tuple(DTYPE_RANGE))
        check_int_range("in_bits", self.in_bits, 0, 46 if self.product_bits == 64 else 30)
        if len(self.m) != len(self.s):
            raise ValueError("m and s must have the same length (one per channel)")

    @property
    def out_range(self) -> tuple[int, int]:
        return DTYPE_RANGE[self.out_dtype]

    @property
    def high_word_form(self) -> bool:
        """Whether an int32 input requantizes exactly from the high word of its int64 product
        (see :func:`intvit.topi.requantize.requantize_expr`): int64 products, no pre-shift,
        ``|m| < 2**31``, every ``s >= 33`` and ``|bias| < 2**30``.

        Then ``(x * m + 2**(s-1)) >> s == (hi + 2**(s-33)) >> (s-32)`` with ``hi = (x * m) >>
        32``, as ``2**(s-1)`` is a multiple of ``2**32``; for every int32 ``x``, ``|hi| <
        2**30`` and the result ``< 2**29``, so the rest runs in int32 (``vpmuldq`` for the
        product, then 32-bit lanes: twice the SIMD width of the int64 form and no emulated
        64-bit shifts or clamps on AVX2)."""
        return (
            self.product_bits == 64
            and self.p == 0
            and min(self.s) >= 33
            and max(abs(v) for v in self.m) < 2**31
            and max(abs(v) for v in self.bias) < 2**30
        )

    @property
    def int32_form(self) -> bool:
        """Whether int64 products never leave int32 for inputs within the contract (``|q| <=
        2**in_bits``): then the kernel computes in int32, the same integers (a GELU's int8
        input times a 22-bit ``m``: four emulated int64 multiplies per element on AVX2 went)."""
        if self.product_bits != 64 or self.p != 0:
            return False
        top = max(self.s)
        bound = 2**self.in_bits * max(abs(v) for v in self.m) + (1 << max(top - 1, 0))
        return bound < 2**31 and (bound >> min(self.s)) + max(abs(v) for v in self.bias) < 2**31

    @property
    def table_dtype(self) -> str:
        """The dtype of the per-channel ``m``, ``s``, ``bias`` tables a kernel takes."""
        if self.high_word_form or self.int32_form:
            return "int32"
        return f"int{self.product_bits}"

    @property
    def channels(self) -> int:
        return max(len(self.m), len(self.bias))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.asarray(self.m, dtype=np.int64),
            np.asarray(self.s, dtype=np.int64),
            np.asarray(self.bias, dtype=np.int64),
        )

    @classmethod
    def concat(cls, parts: Sequence[RequantParams], widths: Sequence[int]) -> RequantParams:
        """The per-channel requantization of outputs side by side (a fused q/k/v projection),
        part ``i`` on the next ``widths[i]`` channels (a per-tensor part repeated): the same
        integers as each part on its own channels."""
        first = parts[0]
        keys = ("p", "product_bits", "in_bits", "out_dtype")
        for part, width in zip(parts, widths, strict=True):
            if tuple(getattr(part, k) for k in keys) != tuple(getattr(first, k) for k in keys):
                raise ValueError(
                    "only requantizations with the same p, product bits, in_bits and out_dtype "
                    "concatenate"
                )
            if part.channels not in (1, width):
                raise ValueError(f"a part with {part.channels} channels cannot cover {width}")

        def joined(field: str) -> tuple[int, ...]:
            out: tuple[int, ...] = ()
            for part, width in zip(parts, widths, strict=True):
                values = getattr(part, field)
                out += values * width if len(values) == 1 else values
            return out

        return cls(
            m=joined("m"),
            s=joined("s"),
            p=first.p,
            product_bits=first.product_bits,
            in_bits=first.in_bits,
            out_dtype=first.out_dtype,
            bias=joined("bias"),
        )

    @classmethod
    def make(
        cls,
        ratio: float | Sequence[float],
        in_bits: int,
        out_dtype: str = "int8",
        product_bits: int = 64,
        bias: Sequence[int] | int = 0,
    ) -> RequantParams:
        """Requantize by ``ratio`` (``S_in / S_out``, scalar or per channel).

        ``in_bits``: the input's magnitude bound, ``|q| <= 2**in_bits`` (7 for int8).
        """
        check_choice("product_bits", product_bits, (32, 64))
        ratios = [float(r) for r in np.atleast_1d(np.asarray(ratio, dtype=np.float64))]
        if product_bits == 64:
            check_int_range("in_bits", in_bits, 0, 46)
            # |q| <= 2**in_bits times |m| < 2**(m_bits-1), plus the rounding half: < 2**63
            p, m_bits, max_shift = 0, min(32, 63 - in_bits), 62
        else:
            check_int_range("in_bits", in_bits, 0, 30)
            # Budget: (in_bits - p) + (m_bits - 1) <= 29 keeps product + rounding below 2**31.
            p = max(0, in_bits - 15)
            m_bits, max_shift = 30 - (in_bits - p), 30
        dyadics = [
            Dyadic.from_float(r * 2.0**p, m_bits=m_bits, max_shift=max_shift) for r in ratios
        ]
        biases = tuple(int(b) for b in np.atleast_1d(np.asarray(bias, dtype=np.int64)))
        return cls(
            m=tuple(d.m for d in dyadics),
            s=tuple(d.s for d in dyadics),
            p=p,
            product_bits=product_bits,
            in_bits=in_bits,
            out_dtype=out_dtype,
            bias=biases,
        )

"""Dyadic numbers ``m / 2**s`` that replace a float ratio of scales (I-ViT, "dyadic arithmetic").

Requantizing an integer ``q`` at scale ``S_in`` to scale ``S_out`` multiplies by the real ratio
``S_in / S_out``; an integer-only kernel multiplies by ``m`` and shifts right by ``s`` instead,
rounding half up: ``(q * m + 2**(s-1)) >> s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from intvit.topi.contract import check_int_range


@dataclass(frozen=True)
class Dyadic:
    """``m / 2**s``: ``m`` a signed integer with ``|m| < 2**m_bits``, ``s`` in [0, 62]."""

    m: int
    s: int

    def __post_init__(self) -> None:
        check_int_range("dyadic.s", self.s, 0, 62)
        check_int_range("dyadic.m", self.m, -(2**62), 2**62)

    @property
    def value(self) -> float:
        return self.m / 2.0**self.s

    @classmethod
    def from_float(cls, ratio: float, m_bits: int = 31, max_shift: int = 62) -> Dyadic:
        """The closest dyadic to ``ratio`` with ``|m| < 2**m_bits`` and the largest usable ``s``.

        Raises ValueError when ``|ratio|`` is too large to represent with ``m_bits`` bits, or
        is not finite.
        """
        check_int_range("m_bits", m_bits, 1, 62)
        if not math.isfinite(ratio):
            raise ValueError(f"ratio={ratio!r} must be finite")
        if ratio == 0.0:
            return cls(0, 0)
        mag = abs(ratio)
        if mag >= 2.0 ** (m_bits - 1):
            raise ValueError(f"ratio={ratio!r} needs more than m_bits={m_bits} bits")
        # Choose s so that |m| lands in [2**(m_bits-2), 2**(m_bits-1)], then round.
        exp = math.floor(math.log2(mag))
        s = min(max_shift, m_bits - 2 - exp)
        s = max(s, 0)
        m = round(mag * 2.0**s)
        if m >= 2 ** (m_bits - 1) and s > 0:  # rounding carried into the next power of two
            s -= 1
            m = round(mag * 2.0**s)
        return cls(m if ratio > 0 else -m, s)


def bit_length(value: int) -> int:
    """Bits needed for ``|value|`` (0 for 0)."""
    return abs(int(value)).bit_length()

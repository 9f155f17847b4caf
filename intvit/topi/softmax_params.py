"""Compile-time constants of the integer softmax variants, from the input's float scale.

Every variant takes ``q`` (int8/int16/int32, real value ``q * scale``) and reduces over the
last axis; the output is a probability at ``out_scale`` in ``[0, out_max]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from intvit.topi.contract import check_choice, check_fits, check_int_range, check_scale
from intvit.topi.dyadic import Dyadic, bit_length

SOFTMAX_VARIANTS = ("ibert", "shiftmax", "edge")

# I-BERT's polynomial (authors' code): A * (r**2 + B r + C), A = 0.35815147
IBERT_EXP_A = 0.35815147
IBERT_EXP_B = 0.96963238 / 0.35815147
IBERT_EXP_C = 1.0 / 0.35815147
IBERT_LN2 = -0.6931


def authors_exp16_multiplier(scale: float, c_int: int, n: int) -> tuple[int, int]:
    """``(m, e)``: the multiplier ``m / 2**e`` by which I-BERT's ``IntSoftmax`` requantizes its
    exps to 16 bits, computed with the authors' float steps:

    - the exp scale ``A = 0.35815147 * S**2 / 2**n`` (float64, ``int_polynomial`` then
      ``int_exp``);
    - ``QuantAct(16)``'s range: its float32 running maximum, the largest exp ``(c_int << n) *
      A`` (every row's maximum gives it), and its scale ``B = x_max / (2**15 - 1)`` in float32;
    - ``FixedPointMul``: ``A / B`` in float64 (``B`` read as float32), split by
      ``batch_frexp`` into a mantissa rounded half up to 31 bits, ``m``, and ``e = 31 -
      exponent``.
    """
    import decimal

    import numpy as np

    exp_scale = IBERT_EXP_A * scale**2 / 2.0**n
    x_max = np.float32(float(c_int) * 2.0**n * exp_scale)
    act_scale = x_max / np.float32(2**15 - 1)  # float32 division, as torch's on the buffer
    mantissa, exponent = math.frexp(exp_scale / float(act_scale))
    m = decimal.Decimal(mantissa * 2**31).quantize(decimal.Decimal(1), decimal.ROUND_HALF_UP)
    return int(m), 31 - exponent


def _check_common(scale: float, out_bits: int, acc_bits: int, n: int | None = None) -> None:
    check_scale("scale", scale)
    check_int_range("out_bits", out_bits, 2, 16)
    check_choice("acc_bits", acc_bits, (32, 64))
    if n is not None:
        check_int_range("n", n, 1, 30)


class _Probabilities:
    """Output dtype of a softmax: uint8 when ``out_max`` fits, else int32."""

    out_max: int

    @property
    def out_dtype(self) -> str:
        return "uint8" if self.out_max <= 255 else "int32"


@dataclass(frozen=True)
class ShiftmaxParams(_Probabilities):
    """I-ViT Shiftmax (PyTorch ``IntSoftmax``): ``x0 = floor(-1/S)``, ``n = 15``.

    Output ``floor(exp * floor((2**31-1)/sum) / 2**(31-out_bits+1))`` at scale
    ``2**-(out_bits-1)``, in ``[0, 2**(out_bits-1)]``. Exact in int64; int32 overflows when
    ``sum(exp)`` passes ``2**31`` (wide inputs: ``-x0 * 2**15 * row_len >= 2**31``).
    """

    scale: float
    x0: int
    n: int
    out_bits: int
    acc_bits: int

    variant = "shiftmax"

    @classmethod
    def from_scale(cls, scale: float, out_bits: int = 8, n: int = 15, acc_bits: int = 64):
        _check_common(scale, out_bits, acc_bits, n)
        x0 = math.floor(-1.0 / scale)
        check_fits("x0 * n * 2", 2 * n * x0, 32)
        return cls(scale, x0, n, out_bits, acc_bits)

    @property
    def out_scale(self) -> float:
        return 2.0 ** -(self.out_bits - 1)

    @property
    def out_max(self) -> int:
        return 2 ** (self.out_bits - 1)


@dataclass(frozen=True)
class IBertSoftmaxParams(_Probabilities):
    """I-BERT softmax as in the authors' code: polynomial exp, ``n = 30``, exps requantized to
    16 bits, output ``floor(exp16 * floor(2**32/sum) / 2**(32-out_bits))`` at scale
    ``2**-out_bits``. Needs int64: ``z << (30 - q)`` and the constant ``2**32`` do not fit
    int32.

    The 16-bit requantization is the authors' ``QuantAct(16)`` with its ``FixedPointMul``,
    rounding for rounding (:func:`authors_exp16_multiplier`): the exp ``e = z << (n - q)``
    times the 31-bit mantissa ``frexp_m`` of their float64 ratio of the exp scale to their
    float32 16-bit scale, ``round(e * frexp_m / 2**frexp_e)`` ties to even (``torch.round``),
    clamped to ``2**15 - 1``. The int64 kernel computes it as ``round(z * frexp_m /
    2**(frexp_e - n + q))`` (``z <= c_int < 2**31``: the product fits), so a tie of the exact
    ratio (``S = 0.08``, ``x = x0``: 16383.5) goes the way the authors' float32 scale sends
    it. ``m16 / 2**s16`` is what an int32 port multiplies by (``acc_bits=32``, the truncation
    audit's case): the exact ratio ``(2**15-1) / (c_int << n)`` in ``min(32, 62 -
    bitlen(c_int))`` bits. A one-hot row gives ``2**out_bits - 1`` in integers (only float32
    code reaches ``2**out_bits``); the clamp to ``2**out_bits - 1`` is a guard that never acts
    on the int64 path.
    """

    scale: float
    x0: int
    b_int: int
    c_int: int
    n: int
    m16: int
    s16: int
    out_bits: int
    acc_bits: int
    frexp_m: int
    frexp_e: int

    variant = "ibert"

    @classmethod
    def from_scale(cls, scale: float, out_bits: int = 8, n: int = 30, acc_bits: int = 64):
        _check_common(scale, out_bits, acc_bits, n)
        x0 = math.floor(IBERT_LN2 / scale)
        b_int = math.floor(IBERT_EXP_B / scale)
        c_int = math.floor(IBERT_EXP_C / scale**2)
        check_fits("c_int", c_int, 32)
        # exp (scale A*S^2/2^n, max c_int * 2^n) -> 16 bits: the max maps to 2**15 - 1; the
        # dyadic m16 / 2**s16 of that ratio is what the int32 port multiplies by.
        ratio = (2**15 - 1) / (c_int * 2.0**n)
        dy = Dyadic.from_float(ratio, m_bits=min(32, 62 - bit_length(c_int)))
        frexp_m, frexp_e = authors_exp16_multiplier(scale, c_int, n)
        if dy.s <= n or frexp_e <= n:
            raise ValueError(f"scale={scale!r} is too coarse for I-BERT softmax with n={n}")
        return cls(scale, x0, b_int, c_int, n, dy.m, dy.s, out_bits, acc_bits, frexp_m, frexp_e)

    @property
    def out_scale(self) -> float:
        return 2.0**-self.out_bits

    @property
    def out_max(self) -> int:
        return 2**self.out_bits - 1


@dataclass(frozen=True)
class EdgeSoftmaxParams(_Probabilities):
    """Int32-safe softmax (seed 001): I-BERT's polynomial exp with right shifts only, the exps
    requantized to ``B = 31 - m_star`` bits, and a row reciprocal:

    ``e = (z >> e_shift or z << -e_shift) >> q`` in ``[0, 2**B]``; ``sum <= row_len * 2**B
    < 2**31``; ``out = round(e * floor((2**31-1)/sum) / 2**(31-out_bits))`` clamped to
    ``2**out_bits - 1``, at scale ``2**-out_bits``. ``m_star`` trades exp resolution (small
    ``m_star``) against reciprocal resolution (large); it is chosen by
    :mod:`intvit.topi.softmax_mstar`. The centred input is shifted to the working scale
    ``S * 2**p`` where ``c_int`` has 30 bits: right (``p > 0``) for fine int32 inputs, left
    (``p < 0``, after clamping at ``pre_clamp`` so nothing overflows) for coarse int8 ones,
    where I-BERT's integer ``x0 = floor(-ln2/S)`` would otherwise misstate ln 2 by up to 50%.
    """

    scale: float
    p: int
    x0: int
    b_int: int
    c_int: int
    e_shift: int
    m_star: int
    row_len: int
    out_bits: int
    acc_bits: int = 32

    variant = "edge"

    @property
    def exp_bits(self) -> int:
        return 31 - self.m_star

    @property
    def pre_clamp(self) -> int:
        """Lower bound on ``q - max`` before a left shift by ``-p`` (below it exp is 0)."""
        return -((-self.exp_bits * self.x0) >> max(0, -self.p)) - 1

    @staticmethod
    def m_star_range(row_len: int, out_bits: int = 8) -> tuple[int, int]:
        """Admissible ``m_star``: the sum must fit int32, and exps keep ``out_bits + 1`` bits."""
        return bit_length(row_len), 30 - out_bits

    @classmethod
    def from_scale(
        cls,
        scale: float,
        row_len: int,
        out_bits: int = 8,
        m_star: int | None = None,
        acc_bits: int = 32,
    ):
        _check_common(scale, out_bits, acc_bits)
        check_int_range("row_len", row_len, 1, 2**20)
        lo, hi = cls.m_star_range(row_len, out_bits)
        if lo > hi:
            raise ValueError(f"row_len={row_len} is too long for an int32-safe softmax")
        if m_star is None:
            m_star = lo + (hi - lo) // 2
        check_int_range("m_star", m_star, lo, hi)

        # Bring the working scale S * 2**p to where c_int has 30 bits: fine inputs shift right
        # (p > 0), coarse ones left (p < 0) so that x0 = floor(-ln2 / S') is exact to ~1e-4.
        def c_of(shift: int) -> int:
            return math.floor(IBERT_EXP_C / (scale * 2.0**shift) ** 2)

        p = 0
        while c_of(p) >= 2**31:
            p += 1
        while p > -24 and c_of(p - 1) < 2**31:
            p -= 1
        s = scale * 2.0**p
        x0 = math.floor(IBERT_LN2 / s)
        b_int = math.floor(IBERT_EXP_B / s)
        c_int = c_of(p)
        e_shift = bit_length(c_int) - (31 - m_star)
        return cls(scale, p, x0, b_int, c_int, e_shift, m_star, row_len, out_bits, acc_bits)

    @property
    def out_scale(self) -> float:
        return 2.0**-self.out_bits

    @property
    def out_max(self) -> int:
        return 2**self.out_bits - 1


SoftmaxParams = ShiftmaxParams | IBertSoftmaxParams | EdgeSoftmaxParams


def softmax_params(variant: str, scale: float, row_len: int, out_bits: int = 8, **kwargs):
    """The one helper that turns a float input scale into a variant's constants."""
    check_choice("variant", variant, SOFTMAX_VARIANTS)
    return _FROM_SCALE[variant](scale, row_len, out_bits, **kwargs)


#: Each variant's constants from the input scale, the row length and the output bits.
_FROM_SCALE = {
    ShiftmaxParams.variant: lambda scale, _n, bits, **kw: ShiftmaxParams.from_scale(
        scale, bits, **kw
    ),
    IBertSoftmaxParams.variant: lambda scale, _n, bits, **kw: IBertSoftmaxParams.from_scale(
        scale, bits, **kw
    ),
    EdgeSoftmaxParams.variant: EdgeSoftmaxParams.from_scale,
}

"""Compile-time constants of the integer GELU variants, from float scales.

Every variant takes ``q`` (int8/int16/int32, real ``q * scale``, ``|q| <= 2**in_bits``) and
returns int8 (by default) at ``out_scale``: the variant's raw integer GELU followed by a dyadic
requantization. Only ``shiftgelu`` reduces over the last axis (I-ViT subtracts the row max).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from intvit.topi.contract import check_choice, check_fits, check_int_range, check_scale
from intvit.topi.dyadic import bit_length
from intvit.topi.requantize_params import RequantParams

GELU_VARIANTS = ("ibert", "shiftgelu", "sigmoid1702", "edge", "lut", "relu")

# I-BERT i-erf: L(x) = sgn(x) [a (min(|x|, -b) + b)^2 + 1] on x / sqrt(2)
IERF_A = -0.2888
IERF_B = -1.769
IERF_K = 1.4142
#: Edge GELU: the input is requantized to this many magnitude bits (seed 001: below 10).
EDGE_GELU_BITS = 9
#: Edge GELU never uses a requantized input range below this (keeps q * poly < 2**30).
EDGE_GELU_MIN_RANGE = 2.0


def _raw_requant(ratio: float, raw_bits: int, acc_bits: int, out_dtype: str) -> RequantParams:
    product = 64 if acc_bits == 64 else 32
    return RequantParams.make(ratio, min(raw_bits, 46 if product == 64 else 30), out_dtype, product)


@dataclass(frozen=True)
class IErfConsts:
    """Integer i-erf constants at input scale ``s_erf`` with output shift ``n``."""

    b_int: int
    c_int: int
    n: int
    shift_int: int
    sig_scale: float

    @classmethod
    def at(cls, s_erf: float, n: int | None) -> IErfConsts:
        b_int = math.floor(IERF_B / s_erf)
        c_int = math.floor((1.0 / IERF_A) / s_erf**2)
        check_fits("c_int", c_int, 62)
        if n is None:  # keep |y| at ~15 bits; the authors fix n = 14 for BERT's int32 inputs
            n = max(0, bit_length(c_int) - 15)
        sig_scale = s_erf**2 * IERF_A * 2.0**n
        return cls(b_int, c_int, n, math.floor(1.0 / sig_scale), sig_scale)

    @property
    def poly_bits(self) -> int:
        """Bits of ``max |y + shift_int|``."""
        return bit_length((abs(self.c_int) >> self.n) + abs(self.shift_int) + 1)


@dataclass(frozen=True)
class IBertGeluParams:
    """I-BERT i-GELU (authors' ``IntGELU``): ``q * (sgn(q)((min(|q|,-b)+b)^2 + c) >> n
    + floor(1/S_sig))`` at scale ``S * S_sig / 2``; ``n`` automatic unless given (a departure:
    the authors' ``n = 14`` assumes int32 GEMM outputs and zeroes the erf term on int8 input).
    """

    scale: float
    erf: IErfConsts
    out: RequantParams
    in_bits: int
    acc_bits: int
    variant = "ibert"

    @classmethod
    def from_scale(cls, scale, out_scale, in_bits=7, n=None, acc_bits=64, out_dtype="int8"):
        _check_common(scale, out_scale, in_bits, acc_bits)
        erf = IErfConsts.at(scale / IERF_K, n)
        raw_scale = scale * erf.sig_scale / 2
        out = _raw_requant(raw_scale / out_scale, in_bits + erf.poly_bits, acc_bits, out_dtype)
        return cls(scale, erf, out, in_bits, acc_bits)


@dataclass(frozen=True)
class ShiftGeluParams:
    """I-ViT ShiftGELU (authors' ``IntGELU``): ``x * sigmoid(1.702 x)`` with the sigmoid
    ``e^(x-max) / (e^(x-max) + e^(-max))`` from ShiftExp (``n = 23``) per row, then
    ``q * sig`` at scale ``S / 2**(sig_bits-1)``. int64; int32 overflows for fine scales.
    """

    scale: float
    x0: int
    n: int
    sig_bits: int
    out: RequantParams
    in_bits: int
    acc_bits: int
    variant = "shiftgelu"

    @classmethod
    def from_scale(
        cls, scale, out_scale, in_bits=7, n=23, sig_bits=8, acc_bits=64, out_dtype="int8"
    ):
        _check_common(scale, out_scale, in_bits, acc_bits)
        x0 = _sigmoid_x0(scale, n, sig_bits)
        check_fits("x0 << 33", x0 * 2**33, 63)
        ratio = scale / 2.0 ** (sig_bits - 1) / out_scale
        out = _raw_requant(ratio, in_bits + sig_bits - 1, acc_bits, out_dtype)
        return cls(scale, x0, n, sig_bits, out, in_bits, acc_bits)


@dataclass(frozen=True)
class Sigmoid1702Params:
    """MCUFormer ``x * sigmoid(1.702 x)``, elementwise: ShiftExp of ``-|1.702 x|`` (``n = 15``),
    ``sig(|y|) = E0 * floor((2**31-1)/(E0 + e)) >> (31 - sig_bits)`` with ``E0 = -x0 * 2**n``,
    ``sig(-y) = 2**sig_bits - sig(y)``; output ``q * sig`` at ``S / 2**sig_bits``.
    Int32 while ``-x0 < 2**15`` and ``in_bits + sig_bits <= 30``.
    """

    scale: float
    x0: int
    n: int
    sig_bits: int
    out: RequantParams
    in_bits: int
    acc_bits: int
    variant = "sigmoid1702"

    @property
    def e0(self) -> int:
        return -self.x0 << self.n

    @classmethod
    def from_scale(
        cls, scale, out_scale, in_bits=7, n=15, sig_bits=8, acc_bits=32, out_dtype="int8"
    ):
        _check_common(scale, out_scale, in_bits, acc_bits)
        x0 = _sigmoid_x0(scale, n, sig_bits)
        check_fits("2 * E0", -2 * x0 << n, acc_bits)
        ratio = scale / 2.0**sig_bits / out_scale
        out = _raw_requant(ratio, in_bits + sig_bits, acc_bits, out_dtype)
        return cls(scale, x0, n, sig_bits, out, in_bits, acc_bits)


@dataclass(frozen=True)
class EdgeGeluParams:
    """Int32-safe GELU (seed 001): requantize the input to ``EDGE_GELU_BITS`` magnitude bits
    (int32-only dyadic form), then I-BERT's i-GELU with ``n = 0``: ``|q'| < 2**9`` keeps
    ``q' * (y + shift)`` below ``2**30`` (``2**(3b+1)`` in the seed), then requantize (int32).
    """

    scale: float
    in_scale: float
    pre: RequantParams
    erf: IErfConsts
    out: RequantParams
    in_bits: int
    acc_bits: int
    variant = "edge"

    @property
    def q_max(self) -> int:
        return 2**EDGE_GELU_BITS - 1

    @classmethod
    def from_scale(cls, scale, out_scale, in_bits=7, in_max=None, acc_bits=32, out_dtype="int8"):
        """``in_max``: calibrated real max ``|x|``; defaults to the full ``2**in_bits * scale``."""
        _check_common(scale, out_scale, in_bits, acc_bits)
        in_bits = min(in_bits, 30)
        real_max = float(in_max) if in_max is not None else 2.0**in_bits * scale
        s_in = max(real_max, EDGE_GELU_MIN_RANGE) / (2**EDGE_GELU_BITS - 1)
        pre = RequantParams.make(scale / s_in, in_bits, "int32", product_bits=32)
        erf = IErfConsts.at(s_in / IERF_K, 0)
        raw_bits = EDGE_GELU_BITS + erf.poly_bits
        if raw_bits > 30:
            raise ValueError(f"edge GELU bound 2**{raw_bits} exceeds int32 (scale={scale!r})")
        out = RequantParams.make(s_in * erf.sig_scale / 2 / out_scale, raw_bits, out_dtype, 32)
        return cls(scale, s_in, pre, erf, out, in_bits, acc_bits)


#: The lut GELU's input domain: every int8 value, ``table[q + LUT_OFFSET]``.
LUT_OFFSET = 128
LUT_SIZE = 256
_OUT_RANGE = {"int8": (-128, 127), "int16": (-(2**15), 2**15 - 1)}


def exact_gelu(x: float) -> float:
    """The float GELU, ``x * Phi(x)`` (erf form, as ``torch.nn.GELU()``)."""
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class LutGeluParams:
    """Exact-rounding GELU of int8 inputs: a 256-entry table, built at compile time from the
    two scales, ``table[q + 128] = clamp(floor(GELU(q * scale) / out_scale + 1/2))``.

    Integer-only at run time (one load per element, no arithmetic), so every intermediate
    fits int32 trivially; its only error is the output rounding (at most 1/2 LSB of
    ``out_scale``, against I-BERT's i-erf polynomial whose GELU error reaches 0.018 in real
    units). Inputs must be int8 (``in_bits <= 7``): a GEMM accumulator is requantized first.
    """

    scale: float
    out_scale: float
    table: tuple[int, ...]
    out_dtype: str
    in_bits: int = 7
    acc_bits: int = 32
    variant = "lut"

    @classmethod
    def from_scale(cls, scale, out_scale, in_bits=7, acc_bits=32, out_dtype="int8"):
        _check_common(scale, out_scale, in_bits, acc_bits)
        if in_bits > 7:
            raise ValueError(
                f"the lut GELU takes int8 inputs (in_bits <= 7), not in_bits={in_bits}; "
                "requantize the accumulator to int8 first or use the edge variant"
            )
        check_choice("out_dtype", out_dtype, tuple(_OUT_RANGE))
        lo, hi = _OUT_RANGE[out_dtype]
        table = tuple(
            min(max(math.floor(exact_gelu((i - LUT_OFFSET) * scale) / out_scale + 0.5), lo), hi)
            for i in range(LUT_SIZE)
        )
        return cls(float(scale), float(out_scale), table, out_dtype, in_bits, acc_bits)

    def table_array(self) -> np.ndarray:
        """The table as the kernel's constant input (``out_dtype [256]``, see
        :func:`intvit.topi.gelu.lut_gelu`)."""
        return np.asarray(self.table, dtype=self.out_dtype)


@dataclass(frozen=True)
class ReluParams:
    """ReLU (seed 002's GELU-less models): ``requantize(max(q, 0))``, int32-only."""

    scale: float
    out: RequantParams
    in_bits: int
    acc_bits: int
    variant = "relu"

    @classmethod
    def from_scale(cls, scale, out_scale, in_bits=7, acc_bits=32, out_dtype="int8"):
        _check_common(scale, out_scale, in_bits, acc_bits)
        out = RequantParams.make(scale / out_scale, min(in_bits, 30), out_dtype, 32)
        return cls(scale, out, in_bits, acc_bits)


GeluParams = (
    IBertGeluParams
    | ShiftGeluParams
    | Sigmoid1702Params
    | EdgeGeluParams
    | LutGeluParams
    | ReluParams
)

_CLASSES = {
    "ibert": IBertGeluParams,
    "shiftgelu": ShiftGeluParams,
    "sigmoid1702": Sigmoid1702Params,
    "edge": EdgeGeluParams,
    "lut": LutGeluParams,
    "relu": ReluParams,
}


def _check_common(scale: float, out_scale: float, in_bits: int, acc_bits: int) -> None:
    check_scale("scale", scale)
    check_scale("out_scale", out_scale)
    check_int_range("in_bits", in_bits, 0, 31)
    check_choice("acc_bits", acc_bits, (32, 64))


def _sigmoid_x0(scale: float, n: int, sig_bits: int) -> int:
    """ShiftExp's ``x0 = floor(-1/S)`` at the sigmoid's input scale ``1.702 * scale``."""
    check_int_range("n", n, 1, 30)
    check_int_range("sig_bits", sig_bits, 2, 16)
    return math.floor(-1.0 / (1.702 * scale))


def gelu_params(variant: str, scale: float, out_scale: float, in_bits: int = 7, **kwargs):
    """The one helper that turns float scales into a GELU variant's constants."""
    check_choice("variant", variant, GELU_VARIANTS)
    return _CLASSES[variant].from_scale(scale, out_scale, in_bits, **kwargs)

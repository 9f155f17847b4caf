"""Compile-time constants of the integer LayerNorm variants.

Both take the int32 residual stream ``q`` (``|q| <= 2**in_bits``; the scale cancels in the
normalization) and normalize over the last axis (``channels``, tensor-wise: seed 001 shows
channel-wise input scales are meaningless here). ``gamma`` and ``beta`` fold into a per-channel
output requantization to int8 at ``out_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from intvit.topi.contract import check_choice, check_int_range, check_scale
from intvit.topi.dyadic import bit_length
from intvit.topi.requantize_params import RequantParams

LAYERNORM_VARIANTS = ("ilayernorm", "edge")
#: Seed 001: the centred numerator is shifted left by M = 32 - 17 before the division.
EDGE_LN_M = 15
#: Edge LayerNorm works on 16-bit inputs: |q >> p| <= 2**15.
EDGE_LN_IN_BITS = 15
#: The fine sum of squares is brought to about this many bits per row.
EDGE_LN_HEADROOM = 28
#: Reciprocal precision: factor = 2**K // den, |y_r * factor| <= 2**(K + 1).
EDGE_LN_K = 29
#: Fine-scale beta bound, |fine_bias| < 2**24: the normalized value plus it stays in int32.
EDGE_LN_FINE_BITS = 24


def _fine_sum_bits(magnitude_bits: int, fine: tuple[int, ...]) -> int:
    """Bits of ``|y + fine_bias|`` for ``|y| <= 2**magnitude_bits`` (the requantization's
    ``in_bits``)."""
    return bit_length((1 << magnitude_bits) + max(map(abs, fine), default=0))


def authors_dim_sqrt(channels: int) -> float:
    """``sqrt(C)`` as I-ViT's ``IntLayerNorm`` holds it (``dim_sqrt``, a float32 tensor): the
    float32 nearest ``sqrt(C)``, which the fine bias ``floor(beta / gamma / (dim_sqrt /
    2**30))`` is computed against. The float64 ``sqrt(C)`` differs in its last float32 bit and
    moves that floor across an integer for some ``beta / gamma``."""
    return float(np.float32(math.sqrt(channels)))


def _check_common(channels: int, out_scale: float, acc_bits: int) -> None:
    check_int_range("channels", channels, 1, 65536)
    check_scale("out_scale", out_scale)
    check_choice("acc_bits", acc_bits, (32, 64))


def _affine(gamma, beta, channels: int, norm_scale: float, out_scale: float):
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (channels,))
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), (channels,))
    if not (np.all(np.isfinite(gamma)) and np.all(np.isfinite(beta))):
        raise ValueError("gamma and beta must be finite")
    ratios = gamma * norm_scale / out_scale
    bias = np.round(beta / out_scale).astype(np.int64)
    return ratios, bias


def _fine_affine(
    gamma, beta, channels: int, norm_scale: float, out_scale: float, bits: int, rounding=np.floor
):
    """``beta`` at the normalized scale: ``(ratios, post_bias, fine_bias)`` with ``fine_bias[c]
    = rounding(beta / gamma / norm_scale)`` (I-ViT's: floor) added before the one rounding by
    ``ratios = gamma * norm_scale / out_scale``, ``|fine_bias| < 2**bits``. A channel with
    ``gamma == 0``, or one whose fine beta would not fit (``|beta / gamma|`` huge: gamma
    all but zero), keeps ``round(beta / out_scale)`` as the requantization's bias instead."""
    ratios, bias = _affine(gamma, beta, channels, norm_scale, out_scale)
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (channels,))
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), (channels,))
    fine_f = np.zeros(channels, dtype=np.float64)
    nonzero = gamma != 0
    fine_f[nonzero] = rounding(beta[nonzero] / gamma[nonzero] / norm_scale)
    live = nonzero & (np.abs(fine_f) < 2.0**bits)
    fine = np.where(live, fine_f, 0).astype(np.int64)
    return ratios, np.where(live, 0, bias), tuple(int(f) for f in fine)


@dataclass(frozen=True)
class ILayerNormParams:
    """I-ViT I-LayerNorm (authors' ``IntLayerNorm``): mean rounded half to even, ``var = sum
    y**2``, ``std`` by I-ViT's ten-step sqrt, ``y * floor((2**31-1)/std) >> 1`` at scale
    ``sqrt(C) / 2**30``; int64 (``sum y**2`` and the product leave int32).

    The affine part is the authors': ``beta`` is added at that fine scale, ``fine_bias[c] =
    floor(beta / gamma / (dim_sqrt / 2**30))`` with their float32 ``dim_sqrt``
    (:func:`authors_dim_sqrt`), and the sum is rounded once to the output by
    ``gamma * sqrt(C) / 2**30 / out_scale`` with a 31-bit multiplier (``|y| <= 2**30``
    since ``std >= floor(sqrt(var)) >= |y|``). A channel with ``gamma == 0`` outputs
    ``round(beta / out_scale)`` (the requantization's own bias).
    """

    channels: int
    in_bits: int
    out: RequantParams
    acc_bits: int = 64
    fine_bias: tuple[int, ...] = ()
    variant = "ilayernorm"
    #: right shift of the input before the statistics (none: I-ViT normalizes q itself)
    pre_shift = 0

    @classmethod
    def from_scale(
        cls,
        channels,
        gamma=1.0,
        beta=0.0,
        out_scale=1 / 32,
        in_bits=24,
        acc_bits=64,
        out_dtype="int8",
    ):
        _check_common(channels, out_scale, acc_bits)
        # sum of y**2 in int64: C * 2**(2 in_bits + 2) < 2**63
        check_int_range("in_bits", in_bits, 0, (61 - bit_length(channels)) // 2)
        norm_scale = authors_dim_sqrt(channels) / 2**30
        ratios, bias, fine = _fine_affine(gamma, beta, channels, norm_scale, out_scale, 40)
        product = 64 if acc_bits == 64 else 32
        y_bits = 30 if product == 32 else _fine_sum_bits(30, fine)
        out = RequantParams.make(ratios, y_bits, out_dtype, product, bias)
        return cls(channels, in_bits, out, acc_bits, fine)


@dataclass(frozen=True)
class EdgeLayerNormParams:
    """Int32-safe LayerNorm (seed 001, ``M = 15``), every intermediate in int32:

    ``x = q >> p`` (rounded) so that ``|x| <= 2**15``; ``y = x - mean`` (``|y| <= 2**16``);
    a coarse ``ss0 = sum((y >> v)**2)`` (``v`` static, so it fits) picks a per-row shift
    ``v_r = max(0, v - (28 - bitlen(ss0)) // 2)`` that gives the fine ``ss = sum((y >> v_r)**2)``
    ~28 bits; ``den = isqrt(ss + 1)`` ~ ``sqrt(C) * std / 2**v_r``; ``y_r = y >> v_r`` clipped to
    ``+-2 den`` (a true std never triggers it); ``out = round(y_r * floor(2**29 / den) /
    2**(29 - M))`` ~ ``(y << M) / (sqrt(C) std)``, so the output scale is ``sqrt(C) / 2**M``
    (``sqrt(C)`` folds into the per-channel requantization, as in I-ViT). One division per row:
    the reciprocal replaces the per-element division of the seed. ``beta`` is added at that
    scale (``fine_bias = rint(beta / gamma / norm_scale)``, ``|fine_bias| < 2**24``) and
    rounded once with the rest by the int32 requantization (``|out + fine_bias| <= 2**16 +
    max |fine_bias|``).
    """

    channels: int
    in_bits: int
    p: int
    v: int
    out: RequantParams
    acc_bits: int = 32
    fine_bias: tuple[int, ...] = ()
    variant = "edge"

    k = EDGE_LN_K

    @property
    def pre_shift(self) -> int:
        """Right shift of the input before the statistics (``p``: the input's extra bits)."""
        return self.p

    @classmethod
    def from_scale(
        cls,
        channels,
        gamma=1.0,
        beta=0.0,
        out_scale=1 / 32,
        in_bits=15,
        acc_bits=32,
        out_dtype="int8",
    ):
        _check_common(channels, out_scale, acc_bits)
        check_int_range("in_bits", in_bits, 0, 30)
        p = max(0, in_bits - EDGE_LN_IN_BITS)
        # |y >> v| <= 2**(16 - v) and C * 2**(2 (16 - v)) <= 2**31
        v = max(0, math.ceil((bit_length(channels) + 1) / 2))
        norm_scale = math.sqrt(channels) * 2.0**-EDGE_LN_M
        # beta at the normalized scale, rounded once with the rest (see docs/kernels.md: beta
        # rounded to the output scale is a per-channel offset of up to half an output LSB on
        # every token, the larger part of the digits low-rank ViT's logit error)
        ratios, bias, fine = _fine_affine(
            gamma, beta, channels, norm_scale, out_scale, EDGE_LN_FINE_BITS, np.rint
        )
        out = RequantParams.make(ratios, _fine_sum_bits(EDGE_LN_M + 1, fine), out_dtype, 32, bias)
        return cls(channels, in_bits, p, v, out, acc_bits, fine)


LayerNormParams = ILayerNormParams | EdgeLayerNormParams


def layernorm_params(variant: str, channels: int, gamma=1.0, beta=0.0, out_scale=1 / 32, **kw):
    """The one helper that turns float gamma/beta/scales into a variant's constants."""
    check_choice("variant", variant, LAYERNORM_VARIANTS)
    cls = {c.variant: c for c in (ILayerNormParams, EdgeLayerNormParams)}[variant]
    return cls.from_scale(channels, gamma, beta, out_scale, **kw)

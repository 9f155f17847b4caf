"""Softmax variants: compiled TE == NumPy reference, bit for bit, over shapes and edge values."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import edge_inputs
from tvm import te

from intvit.topi.registry import get_variant

SHAPES = [(1,), (7,), (1, 197), (3, 197), (2, 3, 197), (3, 1), (12, 7, 768)]


@pytest.mark.parametrize("variant", ["ibert", "shiftmax", "edge"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_softmax_int8_bit_exact(variant, shape, runner_factory):
    v = get_variant("softmax", variant)
    params = v.make_params(0.08, shape[-1])
    q = te.placeholder(shape, "int8", name="q")
    run = runner_factory([q], [v.compute(q, params)])
    rng = np.random.default_rng(zlib.crc32(f"{variant}{shape}".encode()))
    for name, x in edge_inputs(shape, -128, 127, rng, "int8").items():
        expected = v.reference(x, params)
        assert expected.dtype == np.dtype(params.out_dtype)
        np.testing.assert_array_equal(run(x), expected, err_msg=name)


@pytest.mark.parametrize("variant", ["ibert", "shiftmax", "edge"])
def test_softmax_int32_wide_input_bit_exact(variant, runner_factory):
    """int32 inputs at a fine scale (an attention logit straight from the GEMM); for ``ibert``
    the 16-bit requantization's shift then passes 63 for the smallest exps."""
    v = get_variant("softmax", variant)
    scale = 2e-4
    params = v.make_params(scale, 197)
    q = te.placeholder((3, 197), "int32", name="q")
    run = runner_factory([q], [v.compute(q, params)])
    rng = np.random.default_rng(7)
    for name, x in edge_inputs((3, 197), -60000, 60000, rng, "int32").items():
        np.testing.assert_array_equal(run(x), v.reference(x, params), err_msg=name)


def test_shiftmax_int32_kernel_matches_where_nothing_truncates(runner_factory):
    """The int32 build of Shiftmax equals the exact reference where no intermediate overflows."""
    v = get_variant("softmax", "shiftmax")
    params = v.make_params(0.08, 197)
    q = te.placeholder((4, 197), "int8", name="q")
    run = runner_factory([q], [v.compute(q, params, acc_bits=32)])
    x = np.random.default_rng(3).integers(-128, 128, (4, 197)).astype(np.int8)
    np.testing.assert_array_equal(run(x), v.reference(x, params, 64))


@pytest.mark.parametrize("m_star", [8, 12, 16, 22])
def test_edge_softmax_m_star_sweep_bit_exact(m_star, runner_factory):
    v = get_variant("softmax", "edge")
    params = v.make_params(0.05, 197, m_star=m_star)
    q = te.placeholder((5, 197), "int8", name="q")
    run = runner_factory([q], [v.compute(q, params)])
    x = np.random.default_rng(m_star).integers(-128, 128, (5, 197)).astype(np.int8)
    np.testing.assert_array_equal(run(x), v.reference(x, params))


@pytest.mark.parametrize("scale", [0.08, 0.01, 1e-3, 3e-4])
def test_ibert_fused_exp_equals_the_authors_order(scale):
    """The int64 kernel's ``round(z * m / 2**(e - (n-k)))`` equals the authors' order,
    ``round((z << (n-k)) * m / 2**e)`` (Python integers, which never overflow; ties to even)."""
    v = get_variant("softmax", "ibert")
    p = v.make_params(scale, 197)
    q = np.random.default_rng(5).integers(-128, 128, (6, 197)).astype(np.int8)
    x = q.astype(object) - q.max(axis=-1, keepdims=True).astype(object)
    x = np.maximum(x, p.n * p.x0)
    k = x // p.x0
    r = x - p.x0 * k
    z = r * (r + p.b_int) + p.c_int
    e = np.vectorize(lambda zz, kk: max(zz << (p.n - kk), 0), otypes=[object])(z, k)
    e16 = np.vectorize(lambda ee: min(_round_half_even(ee * p.frexp_m, p.frexp_e), 2**15 - 1))(e)
    out = (e16 * ((1 << 32) // e16.sum(axis=-1, keepdims=True))) >> (32 - p.out_bits)
    want = np.minimum(out, p.out_max).astype(np.int64)
    np.testing.assert_array_equal(v.reference(q, p).astype(np.int64), want)


def _round_half_even(num: int, shift: int) -> int:
    from fractions import Fraction

    return round(Fraction(num, 1 << shift))


def _authors_ibert_softmax(row: list[int], scale: float, out_bits: int) -> list[int]:
    """I-BERT's IntSoftmax, step by step from the authors' code (kssteven418/I-BERT,
    ``quant_modules.py``), with their float steps where they take them and exact rationals
    elsewhere; nothing here reads intvit's constants.

    - ``int_polynomial``/``int_exp``: float64 ``x0 = floor(-0.6931/S)``, ``b = floor((0.96963238
      / 0.35815147) / S)``, ``c = floor((1 / 0.35815147) / S**2)``; ``q = floor(x / x0)``;
      ``exp = max((r*(r+b) + c) * 2**(30-q), 0)`` at scale ``A = 0.35815147 * S**2 / 2**30``.
    - ``QuantAct(16)``: its float32 running maximum of the exps (the largest, ``c << 30``, at
      ``A``), its float32 scale ``B = max / 32767``; ``FixedPointMul``: ``A / B`` in float64,
      ``batch_frexp`` (31-bit mantissa, ``decimal.ROUND_HALF_UP``), ``torch.round`` (ties to
      even) of ``exp * m / 2**e``, clamped to 32767.
    - ``floor(2**32 / sum)``, ``floor(exp16 * factor / 2**(32 - out_bits))``.
    """
    import decimal
    import math
    from fractions import Fraction

    coef = [0.35815147, 0.96963238, 1.0]
    coef[1] /= coef[0]
    coef[2] /= coef[0]
    x0 = math.floor(-0.6931 / scale)
    b = math.floor(coef[1] / scale)
    c = math.floor(coef[2] / scale**2)
    exp_scale = coef[0] * scale**2 / 2**30
    x_max = np.float32(float(c << 30) * exp_scale)
    act_scale = np.float32(x_max / np.float32(32767))
    mantissa, exponent = np.frexp(np.float64(exp_scale) / np.float64(act_scale))
    m = int(decimal.Decimal(float(mantissa) * 2**31).quantize(1, decimal.ROUND_HALF_UP))
    shift = 31 - int(exponent)
    top = max(row)
    e16 = []
    for v in row:
        x = max(v - top, 30 * x0)
        q = x // x0
        r = x - x0 * q
        e = max((r * (r + b) + c) * 2 ** (30 - q), 0)
        e16.append(min(round(Fraction(e * m, 2**shift)), 32767))
    factor = 2**32 // max(sum(e16), 1)
    return [min((e * factor) >> (32 - out_bits), 2**out_bits - 1) for e in e16]


@pytest.mark.parametrize("scale", [0.08, 0.02, 3e-3, 3e-4])
@pytest.mark.parametrize("out_bits", [8, 16])
def test_ibert_softmax_equals_the_authors_algorithm_exactly(scale, out_bits):
    """Every output of the int64 ``ibert`` reference is the authors', near-ties included: at
    S = 0.08 every ``x = x0`` gives an exp of exactly 16383.5 in exact arithmetic, which
    the authors' float32 16-bit scale rounds one way (the kernel follows it)."""
    v = get_variant("softmax", "ibert")
    params = v.make_params(scale, 64, out_bits)
    rng = np.random.default_rng(zlib.crc32(f"ibert{scale}{out_bits}".encode()))
    rows = rng.integers(-128, 128, (64, 64))
    rows[0] = 0
    rows[1, :32], rows[1, 32:] = 0, params.x0  # ties: exp(x0) at exactly .5 for S = 0.08
    rows[2] = np.arange(64) * params.x0 // 8
    got = v.reference(rows.astype(np.int32), params)
    want = np.array([_authors_ibert_softmax([int(x) for x in r], scale, out_bits) for r in rows])
    np.testing.assert_array_equal(got.astype(np.int64), want)

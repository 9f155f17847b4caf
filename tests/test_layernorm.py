"""LayerNorm variants: compiled TE == NumPy reference; gamma/beta folded per channel."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import edge_inputs
from tvm import te

from intvit.topi.registry import get_variant

SHAPES = [(1, 1), (1, 7), (3, 192), (197, 768), (2, 5, 384), (1, 3072)]


@pytest.mark.parametrize("variant", ["ilayernorm", "edge"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_layernorm_bit_exact(variant, shape, runner_factory):
    channels = shape[-1]
    rng = np.random.default_rng(zlib.crc32(f"{variant}{shape}".encode()))
    gamma = rng.uniform(-1.5, 1.5, channels)
    beta = rng.normal(0, 0.3, channels)
    v = get_variant("layernorm", variant)
    params = v.make_params(channels, gamma, beta, out_scale=6.0 / 127, in_bits=20)
    q = te.placeholder(shape, "int32", name="q")
    out, tables = v.compute(q, params)
    run = runner_factory([q], [out], extra=tables.tensors)
    for name, x in edge_inputs(shape, -(2**20), 2**20, rng, "int32").items():
        got = run(x, extra_arrays=tables.arrays())
        np.testing.assert_array_equal(got, v.reference(x, params), err_msg=name)


def test_edge_layernorm_zero_variance_rows(runner_factory):
    """Constant rows: the variance is 0, the output is beta at the output scale, rounded once
    (beta is held at the normalized scale, one unit of which is ``ratio`` output LSBs, and the
    int32 requantization first drops ``p`` bits of it: within half an LSB plus half of
    ``2**p`` units, plus half a unit for its own rounding)."""
    v = get_variant("layernorm", "edge")
    beta = np.linspace(-1, 1, 768)
    params = v.make_params(768, 1.0, beta, out_scale=1 / 64, in_bits=16)
    x = np.full((3, 768), 1234, dtype=np.int32)
    q = te.placeholder(x.shape, "int32", name="q")
    out, tables = v.compute(q, params)
    got = runner_factory([q], [out], extra=tables.tensors)(x, extra_arrays=tables.arrays())
    np.testing.assert_array_equal(got, v.reference(x, params))
    unit = np.sqrt(768) * 2.0**-15 * 64  # one fine-beta unit in output LSBs
    assert np.abs(got[0] - beta * 64).max() <= 0.5 + unit * (2 ** (params.out.p - 1) + 0.5) + 1e-3
    assert (got[0] == np.round(beta * 64)).mean() > 0.9


def _authors_ilayernorm(x: np.ndarray, gamma, beta, out_scale: float) -> np.ndarray:
    """I-ViT's IntLayerNorm (authors' code) in exact integers where they are integers, then
    their affine part: ``beta / gamma`` added at the fine scale, one rounding to the output
    (``torch.round``: ties to even)."""
    from fractions import Fraction

    c = x.shape[-1]
    norm_scale = float(np.float32(np.sqrt(c))) / 2**30  # their dim_sqrt is a float32 tensor
    fine = np.floor(beta / gamma / norm_scale).astype(np.int64)
    out = np.empty(x.shape, dtype=np.int64)
    for r, row in enumerate(x.reshape(-1, c)):
        row = [int(v) for v in row]
        mean = round(Fraction(sum(row), c))
        y = [v - mean for v in row]
        var = sum(v * v for v in y)
        k = 2**16
        for _ in range(10):
            k = (k + var // k) // 2
        factor = (2**31 - 1) // k
        for j, v in enumerate(y):
            z = (v * factor) // 2 + int(fine[j])
            ratio = Fraction(float(gamma[j] * norm_scale / out_scale))
            out.reshape(-1, c)[r, j] = min(max(round(z * ratio), -128), 127)
    return out


@pytest.mark.parametrize("channels", [192, 768])
@pytest.mark.parametrize("in_bits", [16, 20])
def test_ilayernorm_matches_the_authors_affine(channels, in_bits):
    """With gamma/beta, ``ilayernorm`` is the authors' algorithm: beta at the fine scale and
    one rounding (the old double rounding differed in 18-26% of outputs). What may still
    differ: exact ties (half up here, half to even there) and the 31-bit multiplier's error,
    which together touch no more than 1 output in 10,000, by 1 LSB."""
    rng = np.random.default_rng(zlib.crc32(f"authors{channels}{in_bits}".encode()))
    gamma = rng.uniform(0.3, 1.5, channels) * rng.choice([-1, 1], channels)
    beta = rng.normal(0, 0.3, channels)
    out_scale = 4.0 / 127
    x = rng.integers(-(2**in_bits), 2**in_bits, (100, channels)) + rng.integers(
        -(2 ** (in_bits - 2)), 2 ** (in_bits - 2), (1, channels)
    )
    v = get_variant("layernorm", "ilayernorm")
    params = v.make_params(channels, gamma, beta, out_scale=out_scale, in_bits=in_bits + 1)
    assert {int(m).bit_length() for m in params.out.m} == {31}  # the 31-bit multiplier
    got = v.reference(x.astype(np.int32), params).astype(np.int64)
    want = _authors_ilayernorm(x, gamma, beta, out_scale)
    diff = np.abs(got - want)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= got.size / 10_000, np.count_nonzero(diff)


def test_ilayernorm_fine_bias_takes_the_authors_float32_dim_sqrt():
    """``fine_bias = floor(beta / gamma / (dim_sqrt / 2**30))`` with the authors' float32
    ``dim_sqrt``, pinned with exact fractions at a ``beta / gamma`` where the float64
    ``sqrt(C)`` would floor one unit lower."""
    import math
    from fractions import Fraction

    channels, units = 768, 12345
    dim_sqrt = Fraction(float(np.float32(math.sqrt(channels))))
    ratio = float(units * dim_sqrt / 2**30)  # exactly ``units`` fine steps at their scale
    assert Fraction(ratio) == units * dim_sqrt / 2**30
    assert math.floor(Fraction(ratio) / (Fraction(math.sqrt(channels)) / 2**30)) == units - 1
    v = get_variant("layernorm", "ilayernorm")
    params = v.make_params(channels, 1.0, ratio, out_scale=1 / 64, in_bits=16)
    assert params.fine_bias[0] == math.floor(Fraction(ratio) / (dim_sqrt / 2**30)) == units

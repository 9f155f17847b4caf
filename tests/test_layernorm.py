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
    """Constant rows: the variance is 0, the output is the folded beta."""
    v = get_variant("layernorm", "edge")
    beta = np.linspace(-1, 1, 768)
    params = v.make_params(768, 1.0, beta, out_scale=1 / 64, in_bits=16)
    x = np.full((3, 768), 1234, dtype=np.int32)
    q = te.placeholder(x.shape, "int32", name="q")
    out, tables = v.compute(q, params)
    got = runner_factory([q], [out], extra=tables.tensors)(x, extra_arrays=tables.arrays())
    np.testing.assert_array_equal(got, v.reference(x, params))
    np.testing.assert_array_equal(got[0], np.clip(np.round(beta * 64), -128, 127))

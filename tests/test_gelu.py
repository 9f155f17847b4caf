"""GELU variants: compiled TE == NumPy reference over shapes and edge values."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import edge_inputs
from tvm import te

from intvit.topi.registry import get_variant

VARIANTS = ["ibert", "shiftgelu", "sigmoid1702", "edge", "relu"]
SHAPES = [(1,), (7,), (197,), (3, 768), (1, 3072), (3, 7, 197)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gelu_int8_bit_exact(variant, shape, runner_factory):
    v = get_variant("gelu", variant)
    params = v.make_params(0.05, 6.0 / 127, in_bits=7)
    q = te.placeholder(shape, "int8", name="q")
    run = runner_factory([q], [v.compute(q, params)], vectorize=v.explicit_vectorize)
    rng = np.random.default_rng(hash((variant, shape)) % 2**32)
    for name, x in edge_inputs(shape, -128, 127, rng, "int8").items():
        np.testing.assert_array_equal(run(x), v.reference(x, params), err_msg=name)


@pytest.mark.parametrize("variant", ["ibert", "shiftgelu", "edge", "relu"])
def test_gelu_int32_accumulator_input_bit_exact(variant, runner_factory):
    """GELU fed by an int32 GEMM accumulator (scale S_x * S_w, 20 magnitude bits)."""
    v = get_variant("gelu", variant)
    scale = 6.0 / 2**20
    params = v.make_params(scale, 6.0 / 127, in_bits=20)
    q = te.placeholder((3, 768), "int32", name="q")
    run = runner_factory([q], [v.compute(q, params)])
    rng = np.random.default_rng(11)
    for name, x in edge_inputs((3, 768), -(2**20), 2**20, rng, "int32").items():
        np.testing.assert_array_equal(run(x), v.reference(x, params), err_msg=name)

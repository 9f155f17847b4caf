"""GELU variants: compiled TE == NumPy reference over shapes and edge values."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import edge_inputs
from tvm import te

from intvit.topi.registry import get_variant

VARIANTS = ["ibert", "shiftgelu", "sigmoid1702", "edge", "lut", "relu"]
SHAPES = [(1,), (7,), (197,), (3, 768), (1, 3072), (3, 7, 197)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gelu_int8_bit_exact(variant, shape, runner_factory):
    v = get_variant("gelu", variant)
    params = v.make_params(0.05, 6.0 / 127, in_bits=7)
    q = te.placeholder(shape, "int8", name="q")
    run = runner_factory([q], [v.compute(q, params)], vectorize=v.explicit_vectorize)
    rng = np.random.default_rng(zlib.crc32(f"{variant}{shape}".encode()))
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


@pytest.mark.parametrize("scale", [0.004, 0.02, 0.05, 0.2])
def test_lut_gelu_rounds_exactly(scale):
    """Every int8 input: the lut GELU is the float GELU rounded to the output grid (error at
    most half an output step). The edge variant's i-erf polynomial misses it by more at the
    input ranges of real MLPs (|x| up to ~6; at +-25 the output step hides its error)."""
    from intvit.topi.gelu_params import exact_gelu

    out_scale = exact_gelu(127 * scale) / 127
    q = np.arange(-128, 128, dtype=np.int8)
    want = np.array([exact_gelu(float(v) * scale) for v in q]) / out_scale
    lut = get_variant("gelu", "lut")
    got = lut.reference(q, lut.make_params(scale, out_scale)).astype(np.float64)
    assert np.abs(got - want).max() <= 0.5 + 1e-9
    edge = get_variant("gelu", "edge")
    edge_err = np.abs(edge.reference(q, edge.make_params(scale, out_scale)) - want).max()
    assert edge_err > 0.5 or scale > 0.1, edge_err


def test_lut_gelu_table_runs_once_per_call():
    """The row schedule keeps the 256-entry table stage at the root (not under the row loop)."""
    from intvit.schedules.rowwise import rowwise_schedule
    from intvit.topi.gelu import CONST_TABLE

    v = get_variant("gelu", "lut")
    q = te.placeholder((197, 768), "int8", name="q")
    sch = rowwise_schedule(te.create_prim_func([q, v.compute(q, v.make_params(0.05, 0.05))]))
    table = [b for b in sch.get_child_blocks(sch.get_sblock("root"))]
    annotated = [b for b in table if CONST_TABLE in sch.get(b).annotations]
    assert len(annotated) == 1 and len(sch.get_loops(annotated[0])) == 1


def test_lut_gelu_with_its_table_as_input_bit_exact(runner_factory):
    """The model's form (relax_ops.ops.gelu): the table a constant input instead of a stage
    rebuilt per call; every int8 value, and a wrong table is refused."""
    from intvit.topi.gelu import gelu

    v = get_variant("gelu", "lut")
    params = v.make_params(0.03, 0.03)
    q = te.placeholder((2, 256), "int8", name="q")
    table = te.placeholder((256,), "int8", name="table")
    run = runner_factory([q, table], [gelu(q, params, table=table)])
    x = np.stack([np.arange(-128, 128), np.arange(127, -129, -1)]).astype(np.int8)
    np.testing.assert_array_equal(run(x, params.table_array()), v.reference(x, params))
    with pytest.raises(ValueError, match=r"table must be int8 \[256\]"):
        gelu(q, params, table=te.placeholder((128,), "int8", name="t"))


def test_lut_gelu_rejects_wide_inputs():
    v = get_variant("gelu", "lut")
    with pytest.raises(ValueError, match="int8 inputs"):
        v.make_params(6.0 / 2**20, 6.0 / 127, in_bits=20)
    with pytest.raises(ValueError, match=r"q\.dtype"):
        v.compute(te.placeholder((4,), "int32"), v.make_params(0.05, 0.05))
    with pytest.raises(ValueError, match="outside int8"):
        v.reference(np.array([300]), v.make_params(0.05, 0.05))

"""Integer sqrt, requantize and the int8 GEMMs: compiled == reference."""

from __future__ import annotations

import numpy as np
import pytest
from tvm import te

from intvit.topi.matmul import batch_matmul, dense
from intvit.topi.matmul_ref import batch_matmul_ref, dense_ref
from intvit.topi.requantize import requantize
from intvit.topi.requantize_params import RequantParams
from intvit.topi.requantize_ref import requantize_ref
from intvit.topi.sqrt import isqrt
from intvit.topi.sqrt_ref import isqrt_ivit_ref, isqrt_newton_ref


def _sqrt_inputs(acc_bits: int) -> np.ndarray:
    hi = 2**31 - 1 if acc_bits == 32 else 2**62
    rng = np.random.default_rng(acc_bits)
    squares = np.arange(0, 3000, dtype=np.int64) ** 2
    return np.concatenate(
        [
            np.arange(0, 2000),
            squares[squares <= hi],
            np.maximum(squares[1:][squares[1:] <= hi] - 1, 0),
            rng.integers(0, hi, 4000, dtype=np.int64),
            [hi, hi - 1, 2**30, 2**30 - 1, 2**31 - 1],
        ]
    ).astype(f"int{acc_bits}")


@pytest.mark.parametrize("acc_bits", [32, 64])
@pytest.mark.parametrize("variant", ["newton", "newton_fixed", "ivit"])
def test_isqrt_bit_exact(variant, acc_bits, runner_factory):
    n = _sqrt_inputs(acc_bits)
    inp = te.placeholder(n.shape, f"int{acc_bits}", name="n")
    run = runner_factory([inp], [isqrt(inp, variant, iters=3, acc_bits=acc_bits)])
    if variant == "ivit":
        expected = isqrt_ivit_ref(n, acc_bits)
    else:
        expected = isqrt_newton_ref(n, acc_bits, 3 if variant == "newton_fixed" else None)
    np.testing.assert_array_equal(run(n), expected)


@pytest.mark.parametrize("acc_bits", [32, 64])
def test_isqrt_newton_is_floor_sqrt(acc_bits):
    n = _sqrt_inputs(acc_bits).astype(object)
    root = isqrt_newton_ref(_sqrt_inputs(acc_bits), acc_bits).astype(object)
    assert all(root * root <= n)
    assert all((root + 1) * (root + 1) > n)


@pytest.mark.parametrize("product_bits", [32, 64])
@pytest.mark.parametrize(
    ("in_dtype", "in_bits", "ratio"),
    [("int32", 20, 3.1e-4), ("int32", 30, 1.7e-7), ("int8", 7, 0.73), ("int32", 12, 5.5)],
)
def test_requantize_bit_exact(in_dtype, in_bits, ratio, product_bits, runner_factory):
    params = RequantParams.make(ratio, in_bits, "int8", product_bits)
    lo, hi = (-(2**in_bits), 2**in_bits) if in_dtype == "int32" else (-128, 127)
    x = np.random.default_rng(in_bits).integers(lo, hi + 1, (3, 197)).astype(in_dtype)
    x[0, :4] = [lo, hi, 0, -1]
    q = te.placeholder(x.shape, in_dtype, name="q")
    out, tables = requantize(q, params)
    assert tables is None
    np.testing.assert_array_equal(runner_factory([q], [out])(x), requantize_ref(x, params))
    exact = np.clip(np.floor(x.astype(np.float64) * ratio + 0.5), -128, 127)
    assert np.abs(requantize_ref(x, params) - exact).max() <= 1


def test_requantize_per_channel_bit_exact(runner_factory):
    rng = np.random.default_rng(5)
    ratios = rng.uniform(-0.01, 0.01, 192)
    params = RequantParams.make(ratios, 24, "int8", 32, bias=rng.integers(-20, 20, 192))
    x = rng.integers(-(2**24), 2**24, (7, 192)).astype(np.int32)
    q = te.placeholder(x.shape, "int32", name="q")
    out, tables = requantize(q, params)
    got = runner_factory([q], [out], extra=tables.tensors)(x, extra_arrays=tables.arrays())
    np.testing.assert_array_equal(got, requantize_ref(x, params))


def _high_word_params(rng, channels: int, out_dtype: str) -> RequantParams:
    """Per-channel int64 requantization at the edges of the high-word form: ``|m|`` up to
    ``2**31 - 1``, ``s`` from 33 to 62, ``|bias|`` up to ``2**30 - 1``."""
    m = rng.integers(-(2**31) + 1, 2**31, channels)
    m[:4] = [2**31 - 1, -(2**31) + 1, 1, -1]
    s = rng.integers(33, 63, channels)
    s[:4] = [33, 62, 33, 62]
    bias = rng.integers(-(2**30) + 1, 2**30, channels)
    bias[:4] = [2**30 - 1, -(2**30) + 1, 0, 0]
    return RequantParams(
        tuple(int(v) for v in m), tuple(int(v) for v in s), 0, 64, 31, out_dtype,
        tuple(int(v) for v in bias),
    )  # fmt: skip


def _int32_edges(rng, shape) -> np.ndarray:
    x = rng.integers(-(2**31), 2**31, shape, dtype=np.int64)
    x[0, :6] = [-(2**31), 2**31 - 1, 0, -1, 1, -(2**30)]
    x[1] = 2**31 - 1
    x[2] = -(2**31)
    return x.astype(np.int32)


@pytest.mark.parametrize("out_dtype", ["int8", "int32"])
def test_requantize_high_word_form_bit_exact(out_dtype, runner_factory):
    """The int32 high-word evaluation equals the int64 reference over the whole int32 input
    range and the extremes of ``m``, ``s`` and the bias."""
    rng = np.random.default_rng(33)
    params = _high_word_params(rng, 197, out_dtype)
    assert params.high_word_form and params.table_dtype == "int32"
    x = _int32_edges(rng, (5, 197))
    q = te.placeholder(x.shape, "int32", name="q")
    out, tables = requantize(q, params)
    got = runner_factory([q], [out], extra=tables.tensors)(x, extra_arrays=tables.arrays())
    np.testing.assert_array_equal(got, requantize_ref(x, params))
    per_tensor = RequantParams((params.m[0],), (62,), 0, 64, 31, out_dtype, (params.bias[1],))
    out, tables = requantize(q, per_tensor)
    assert tables is None
    np.testing.assert_array_equal(runner_factory([q], [out])(x), requantize_ref(x, per_tensor))


def test_requantize_high_word_form_needs_its_conditions():
    """Shifts below 33, a pre-shift or int32 products keep the int64 form (and tables)."""
    base = RequantParams((2**30,), (33,), 0, 64, 20, "int8")
    assert base.high_word_form
    assert not RequantParams((2**30,), (32,), 0, 64, 20, "int8").high_word_form
    assert not RequantParams((2**30,), (33,), 0, 64, 20, "int8", (2**30,)).high_word_form
    assert not RequantParams((2**31,), (40,), 0, 64, 20, "int8").high_word_form
    small = RequantParams.make(1e-3, 20, "int8", 32)
    assert not small.high_word_form and small.table_dtype == "int32"
    assert RequantParams((2**30,), (32,), 0, 64, 20, "int8").table_dtype == "int64"


def test_requantize_concat_equals_its_parts():
    """A fused q/k/v projection requantizes each part's channels as the part would."""
    rng = np.random.default_rng(3)
    parts = [
        RequantParams.make(rng.uniform(1e-4, 1e-3, 5), 20, "int8", 64, bias=rng.integers(-9, 9, 5)),
        RequantParams.make(3e-4, 20, "int8", 64, bias=4),
        RequantParams.make(rng.uniform(1e-4, 1e-3, 2), 20, "int8", 64),
    ]
    joined = RequantParams.concat(parts, [5, 5, 2])
    assert joined.channels == 12
    x = rng.integers(-(2**20), 2**20, (4, 12)).astype(np.int32)
    want = np.concatenate(
        [requantize_ref(x[:, :5], parts[0]), requantize_ref(x[:, 5:10], parts[1]),
         requantize_ref(x[:, 10:], parts[2])], axis=1,
    )  # fmt: skip
    np.testing.assert_array_equal(requantize_ref(x, joined), want)
    with pytest.raises(ValueError, match="same p"):
        RequantParams.concat([parts[0], RequantParams.make(3e-4, 12, "int8", 64)], [5, 1])
    with pytest.raises(ValueError, match="cannot cover"):
        RequantParams.concat(parts, [5, 5, 3])


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (197, 192, 576), (7, 768, 3)])
@pytest.mark.parametrize("x_dtype", ["int8", "uint8"])
def test_dense_bit_exact(m, k, n, x_dtype, runner_factory):
    rng = np.random.default_rng(m * k + n)
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max + 1, (m, k)).astype(x_dtype)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, n).astype(np.int32)
    tx, tw, tb = (te.placeholder(a.shape, str(a.dtype)) for a in (x, w, b))
    got = runner_factory([tx, tw, tb], [dense(tx, tw, tb)])(x, w, b)
    np.testing.assert_array_equal(got, dense_ref(x, w, b))


def test_batch_matmul_bit_exact(runner_factory):
    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (3, 17, 64)).astype(np.uint8)
    b = rng.integers(-128, 128, (3, 9, 64)).astype(np.int8)
    ta, tb = te.placeholder(a.shape, "uint8"), te.placeholder(b.shape, "int8")
    got = runner_factory([ta, tb], [batch_matmul(ta, tb)])(a, b)
    np.testing.assert_array_equal(got, batch_matmul_ref(a, b))

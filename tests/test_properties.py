"""Hypothesis properties of the references (the spec), independent of TVM."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intvit.topi.dyadic import Dyadic
from intvit.topi.intops_ref import div_round_half_even
from intvit.topi.registry import get_variant
from intvit.topi.sqrt_ref import isqrt_newton_ref
from intvit.topi.truncation import truncation_audit

# derandomize: the same examples on every run and machine (a failure can be replayed)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
int8_rows = hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=64))


@SETTINGS
@given(st.integers(0, 2**62))
def test_isqrt_is_floor_sqrt(n):
    root = int(isqrt_newton_ref(np.array([n]), 64)[0])
    assert root * root <= n < (root + 1) * (root + 1)


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_isqrt_int32_is_floor_sqrt(n):
    root = int(isqrt_newton_ref(np.array([n], dtype=np.int32), 32)[0])
    assert root * root <= n < (root + 1) * (root + 1)


@SETTINGS
@given(int8_rows, st.floats(0.01, 0.2), st.sampled_from(["edge", "shiftmax", "ibert"]))
def test_softmax_rows_sum_to_one(q, scale, variant):
    """Each row sums to 1.0 within one output LSB per element (floor/round of each term);
    shiftmax (I-ViT's algorithm, as the authors compute it) loses up to ``sum / 2**(32 - b)``
    more, from its integer factor ``floor((2**31 - 1) / sum)``: its exps reach ``-x0 * 2**15``,
    so at scale 0.01 a 25-wide row of near-equal values sums to 101 of 128 (found by
    hypothesis)."""
    v = get_variant("softmax", variant)
    params = v.make_params(scale, q.shape[-1])
    out = v.reference(q, params).astype(np.int64)
    one = round(1.0 / params.out_scale)
    sums = out.sum(axis=-1)
    n = q.shape[-1]
    factor_loss = 0
    if variant == "shiftmax":
        exp_max = -params.x0 * 2**params.n
        factor_loss = -(-n * exp_max // 2 ** (32 - params.out_bits))  # ceil
    assert np.all(sums <= one + (n if variant == "edge" else 0))
    assert np.all(sums >= one - n - 1 - factor_loss)


@SETTINGS
@given(int8_rows, st.floats(0.01, 0.2))
def test_edge_softmax_monotone_in_row(q, scale):
    """Within a row, a larger logit never gets a smaller probability."""
    v = get_variant("softmax", "edge")
    params = v.make_params(scale, q.shape[-1])
    out = v.reference(q, params)
    order = np.argsort(q, axis=-1, kind="stable")
    sorted_out = np.take_along_axis(out, order, axis=-1).astype(np.int64)
    assert np.all(np.diff(sorted_out, axis=-1) >= 0)


@SETTINGS
@given(st.sampled_from(["edge", "ibert", "sigmoid1702", "relu"]), st.floats(0.02, 0.1))
def test_gelu_monotone_for_non_negative_inputs(variant, scale):
    """GELU is increasing for x >= 0 (it dips below zero only for negative x)."""
    q = np.arange(0, 128, dtype=np.int8)
    v = get_variant("gelu", variant)
    out = v.reference(q, v.make_params(scale, 128 * scale / 127)).astype(np.int64)
    assert np.all(np.diff(out) >= 0)


@SETTINGS
@given(
    hnp.arrays(
        np.int32,
        st.tuples(st.integers(1, 4), st.integers(2, 96)),
        elements=st.integers(-(2**24), 2**24),
    ),
)
def test_edge_layernorm_never_truncates(q):
    """Int32-safe on its whole documented input range (|q| <= 2**24 here), any row."""
    v = get_variant("layernorm", "edge")
    params = v.make_params(q.shape[-1], in_bits=24)
    assert truncation_audit("layernorm", "edge", v.reference, q, params).truncated == 0


@SETTINGS
@given(
    hnp.arrays(
        np.int32,
        st.tuples(st.integers(1, 3), st.integers(1, 64)),
        elements=st.integers(-(2**20), 2**20),
    ),
    st.floats(1e-6, 1e-3),
)
def test_edge_gelu_and_softmax_never_truncate(q, scale):
    g = get_variant("gelu", "edge")
    gp = g.make_params(scale, 2**20 * scale / 127, in_bits=20)
    assert truncation_audit("gelu", "edge", g.reference, q, gp).truncated == 0
    s = get_variant("softmax", "edge")
    sp = s.make_params(scale, q.shape[-1])
    assert truncation_audit("softmax", "edge", s.reference, q, sp).truncated == 0


@SETTINGS
@given(st.floats(1e-9, 1e6).flatmap(lambda r: st.sampled_from([r, -r])))
def test_dyadic_is_close(ratio):
    d = Dyadic.from_float(ratio, m_bits=32)
    assert abs(d.value - ratio) <= abs(ratio) * 2.0**-29 + 2.0**-62


@SETTINGS
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=50), st.integers(1, 5000))
def test_round_half_even_division(values, den):
    """Against exact rationals (``round`` of a Fraction rounds half to even), every value."""
    num = np.array(values, dtype=np.int64)
    got = div_round_half_even(num, den)
    want = np.array([round(Fraction(v, den)) for v in values], dtype=np.int64)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.integers(1, 2**20), st.integers(0, 2**21))
def test_magic_divisor_is_floor_division(divisor, top):
    """Where a multiply-shift replaces ``// divisor``, it is exact up to ``top`` and fits
    int32; where none does, it is not offered."""
    from intvit.topi.intops import magic_divisor

    magic = magic_divisor(divisor, top)
    y = np.arange(top + 1, dtype=np.int64)
    if magic is None:
        # None is only right when no shift with an int32-safe multiplier is exact
        for shift in range(32):
            m = -(-(1 << shift) // divisor)
            if top * m < 2**31:
                assert not np.array_equal((y * m) >> shift, y // divisor), (shift, m)
        return
    m, s = magic
    assert top * m < 2**31
    np.testing.assert_array_equal((y * m) >> s, y // divisor)


def _floordiv_kernel(t, divisor: int, lo: int, hi: int):
    from tvm import te

    from intvit.topi.intops import floordiv_const

    return te.compute(t.shape, lambda i: floordiv_const(t(i), divisor, lo, hi))


def test_floordiv_const_compiled_equals_floor_division(runner_factory):
    """The integer exp's range reduction ``x // x0`` (``x <= 0``, ``x0 < 0``) and a positive
    case, compiled, equal NumPy's floor division over their whole ranges."""
    from tvm import te

    from intvit.topi.intops import magic_divisor

    for divisor, lo, hi in ((-13401, -32640, 0), (-3, -255, 0), (37, 0, 100000)):
        assert magic_divisor(abs(divisor), max(-lo, hi)) is not None
        x = np.arange(lo, hi + 1, dtype=np.int32)
        t = te.placeholder(x.shape, "int32", name="x")
        out = _floordiv_kernel(t, divisor, lo, hi)
        np.testing.assert_array_equal(runner_factory([t], [out])(x), x // divisor)

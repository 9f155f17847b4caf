"""The truncation audit (seed 001 Table 1): edge variants never truncate; the papers' do."""

from __future__ import annotations

import numpy as np
import pytest

from intvit.topi.registry import get_variant
from intvit.topi.truncation import truncation_audit

RNG = np.random.default_rng(42)
WIDE_LOGITS = RNG.integers(-(2**20), 2**20, (4, 197)).astype(np.int32)  # int32 QK^T, S=1e-5
INT8_LOGITS = RNG.integers(-128, 128, (4, 197)).astype(np.int8)
INT16_LOGITS = RNG.integers(-(2**14), 2**14, (4, 197)).astype(np.int32)
WIDE_HIDDEN = RNG.integers(-(2**22), 2**22, (4, 768)).astype(np.int32)
RESIDUAL = RNG.integers(-(2**24), 2**24, (4, 768)).astype(np.int32)


def _audit(op, variant, q, *args, **kwargs):
    v = get_variant(op, variant)
    return truncation_audit(op, variant, v.reference, q, v.make_params(*args, **kwargs))


@pytest.mark.parametrize("q", [WIDE_LOGITS, INT8_LOGITS], ids=["int32", "int8"])
def test_edge_softmax_never_truncates(q):
    scale = 1e-5 if q.dtype == np.int32 else 0.08
    for m_star in (8, 15, 22):
        assert _audit("softmax", "edge", q, scale, 197, m_star=m_star).truncated == 0


def test_paper_softmax_truncates():
    """Shiftmax overflows its int32 sum on fine scales; I-BERT's ``z << (30 - q)`` always."""
    assert _audit("softmax", "shiftmax", WIDE_LOGITS, 1e-5, 197).ratio > 0.05
    assert _audit("softmax", "shiftmax", INT8_LOGITS, 0.08, 197).truncated == 0
    assert _audit("softmax", "ibert", INT16_LOGITS, 1e-3, 197).ratio > 0.05
    assert _audit("softmax", "ibert", INT8_LOGITS, 0.08, 197).ratio > 0.1
    assert _audit("softmax", "edge", INT16_LOGITS, 1e-3, 197).truncated == 0


def test_gelu_truncation():
    scale = 6.0 / 2**22
    assert _audit("gelu", "edge", WIDE_HIDDEN, scale, 6 / 127, in_bits=22).truncated == 0
    assert _audit("gelu", "relu", WIDE_HIDDEN, scale, 6 / 127, in_bits=22).truncated == 0
    assert _audit("gelu", "ibert", WIDE_HIDDEN, scale, 6 / 127, in_bits=22).ratio > 0.5
    assert _audit("gelu", "shiftgelu", WIDE_HIDDEN, scale, 6 / 127, in_bits=22).ratio > 0.2
    sig = _audit("gelu", "sigmoid1702", WIDE_HIDDEN, scale, 6 / 127, in_bits=22, acc_bits=64)
    assert sig.ratio > 0.2


def test_layernorm_truncation():
    assert _audit("layernorm", "edge", RESIDUAL, 768, in_bits=24).truncated == 0
    assert _audit("layernorm", "ilayernorm", RESIDUAL, 768, in_bits=24).ratio > 0.9


def test_report_fields():
    report = _audit("softmax", "edge", INT8_LOGITS, 0.08, 197)
    d = report.as_dict()
    assert d["elements"] == INT8_LOGITS.size and d["ratio"] == 0.0

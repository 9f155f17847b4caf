"""Accuracy against float, per variant, within the documented bounds (output LSBs)."""

from __future__ import annotations

import pytest

from intvit.topi.accuracy import ACCURACY_BOUNDS, MEASURES
from intvit.topi.registry import list_variants


def test_every_variant_has_bounds():
    keys = {(v.op, v.name) for v in list_variants()}
    assert keys == {(op, name) for op, name, _ in ACCURACY_BOUNDS}


@pytest.mark.parametrize(("op", "variant", "distribution"), sorted(ACCURACY_BOUNDS))
def test_accuracy_within_bounds(op, variant, distribution):
    result = MEASURES[op](variant, distribution)
    max_bound, mean_bound = ACCURACY_BOUNDS[(op, variant, distribution)]
    assert result.max_lsb <= max_bound, result
    assert result.mean_lsb <= mean_bound, result


@pytest.mark.parametrize("op", ["softmax", "gelu", "layernorm"])
def test_edge_variant_is_at_least_as_accurate_as_the_papers(op):
    """The int32-safe variant is the most exact of the papers' on heavy tails (max error);
    the lut GELU (intvit's default) is exact to rounding, so at least as exact again."""
    edge = MEASURES[op]("edge", "heavy_tailed").max_lsb
    others = [
        MEASURES[op](v.name, "heavy_tailed").max_lsb
        for v in list_variants(op)
        if v.name not in ("edge", "relu", "lut")
    ]
    if op == "layernorm":
        # I-LayerNorm (int64) adds beta at the fine scale and rounds once; edge (int32) rounds
        # twice: measured max 1.01 vs 0.51 LSB, mean 0.33 vs 0.25 (docs/kernels.md)
        assert edge <= min(others) + 0.6
    else:
        assert edge <= min(others) + 0.1
    if op == "gelu":
        assert MEASURES[op]("lut", "heavy_tailed").max_lsb <= min(edge, 0.5 + 1e-9)

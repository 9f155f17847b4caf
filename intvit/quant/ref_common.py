"""What the ViT and Swin reference forwards share: GEMMs (a low-rank one as its two factors),
the traced nonlinear kernels, and the MLP's hidden activation. NumPy integer ops only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from intvit.topi.gelu_ref import gelu_ref
from intvit.topi.low_rank_ref import low_rank_ref
from intvit.topi.matmul_ref import dense_ref
from intvit.topi.requantize_params import RequantParams
from intvit.topi.requantize_ref import requantize_ref

#: ``tracer(op, q, params)`` sees every nonlinear kernel's input (for the truncation audit).
Tracer = Callable[[str, np.ndarray, object], None]


def nonlinear(tracer: Tracer | None, op: str, fn, q: np.ndarray, params) -> np.ndarray:
    if tracer is not None:
        tracer(op, q, params)
    return fn(q, params)


def linear(
    tensors: dict[str, np.ndarray], name: str, x: np.ndarray, low_rank: RequantParams | None = None
) -> np.ndarray:
    """int32 accumulator of ``name`` on int8/uint8 ``x``; with ``low_rank`` (the linear is
    factorized), ``x`` first goes through the factor ``name.lr`` and is requantized to int8."""
    w, b = tensors[f"{name}.w"], tensors[f"{name}.b"]
    if low_rank is not None:
        lr_w, lr_b = tensors[f"{name}.lr.w"], tensors[f"{name}.lr.b"]
        return low_rank_ref(x, lr_w, lr_b, low_rank, w, b)
    return dense_ref(x, w, b)


def block_linear(model, i: int, bp, layer: str, x: np.ndarray) -> np.ndarray:
    """Block ``i``'s ``layer`` (``qkv``, ``proj``, ``fc1``, ``fc2``) on ``x``."""
    return linear(model.tensors, f"b{i}.{layer}", x, bp.low_rank.get(layer))


def mlp_hidden(model, i: int, h: np.ndarray, bp, tracer: Tracer | None = None) -> np.ndarray:
    """Block ``i``'s fc1 and activation on int8 ``h``: int8 GELU output, or for GELU-less
    models (``bp.gelu is None``) ``requantize(relu(acc))`` in uint8 at the fc2 input scale."""
    acc = block_linear(model, i, bp, "fc1", h)
    if bp.gelu is None:
        return requantize_ref(np.maximum(acc, 0), bp.rq_fc1)
    return nonlinear(tracer, "gelu", gelu_ref, requantize_ref(acc, bp.rq_fc1), bp.gelu)

"""The one bit-exact reference forward of the integer model, in NumPy integer ops only, built
from the kernel references (each family's: :mod:`intvit.quant.int_vit`,
:mod:`intvit.quant.int_swin`). Every compiled artifact is checked against it.
"""

from __future__ import annotations

import numpy as np

from intvit.quant.family import get_family
from intvit.quant.int_model import IntModel
from intvit.quant.ref_common import Tracer
from intvit.topi.residual_ref import im2col_ref

im2col = im2col_ref  # re-exported for callers that cut images into patches


def quantize_input(model: IntModel, images: np.ndarray) -> np.ndarray:
    """The one float step at the input: ``clamp(round(x / S_in))`` to int8."""
    images = np.asarray(images)
    a = model.arch
    expected = (a.in_chans, a.img_size, a.img_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"images have shape {tuple(images.shape)}; expected [B, *{expected}]")
    return np.clip(np.round(images / model.scales["input"]), -128, 127).astype(np.int8)


def reference_forward(
    model: IntModel, q_in: np.ndarray, tracer: Tracer | None = None
) -> np.ndarray:
    """int8 images ``[B, C, H, W]`` -> int32 logit accumulators ``[B, heads_out, classes]``
    (one head, or two for distilled DeiT)."""
    if q_in.dtype != np.int8:
        raise ValueError(f"q_in must be int8 (use quantize_input), got {q_in.dtype}")
    return get_family(model.family).reference(model, q_in, tracer)


def dequantize_logits(model: IntModel, acc: np.ndarray) -> np.ndarray:
    """The one float step at the output: logits = acc * S * S_w (heads averaged), ``S`` the
    head input's scale."""
    t = model.tensors
    s = model.scales[get_family(model.family).logit_point]
    names = ["head", "head_dist"][: acc.shape[1]]
    logits = [acc[:, j].astype(np.float64) * s * t[f"{n}.ws"] for j, n in enumerate(names)]
    return np.mean(logits, axis=0)


def predict(model: IntModel, images: np.ndarray) -> np.ndarray:
    """Float images -> float logits through the integer-only model."""
    return dequantize_logits(model, reference_forward(model, quantize_input(model, images)))

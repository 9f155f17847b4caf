"""The one bit-exact reference forward of the integer ViT/DeiT, in NumPy integer ops only,
built from the kernel references. Every compiled artifact is checked against it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from intvit.quant.int_vit import IntModel
from intvit.topi.gelu_ref import gelu_ref
from intvit.topi.layernorm_ref import layernorm_ref
from intvit.topi.matmul_ref import batch_matmul_ref, dense_ref
from intvit.topi.requantize_ref import requantize_ref
from intvit.topi.residual_ref import add_tokens_ref, im2col_ref, residual_add_ref
from intvit.topi.softmax_ref import softmax_ref


def quantize_input(model: IntModel, images: np.ndarray) -> np.ndarray:
    """The one float step at the input: ``clamp(round(x / S_in))`` to int8."""
    images = np.asarray(images)
    a = model.arch
    expected = (a["in_chans"], a["img_size"], a["img_size"])
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"images have shape {tuple(images.shape)}; expected [B, *{expected}]")
    return np.clip(np.round(images / model.scales["input"]), -128, 127).astype(np.int8)


im2col = im2col_ref  # re-exported for callers that cut images into patches


def _linear(model: IntModel, name: str, x: np.ndarray) -> np.ndarray:
    t = model.tensors
    return dense_ref(x, t[f"{name}.w"], t[f"{name}.b"])


#: ``tracer(op, q, params)`` sees every nonlinear kernel's input (for the truncation audit).
Tracer = Callable[[str, np.ndarray, object], None]


def _nonlinear(tracer: Tracer | None, op: str, fn, q: np.ndarray, params) -> np.ndarray:
    if tracer is not None:
        tracer(op, q, params)
    return fn(q, params)


def attention(model: IntModel, i: int, h: np.ndarray, tracer: Tracer | None = None) -> np.ndarray:
    """Block ``i``'s attention on int8 ``h [B, N, D]``: returns the int32 proj accumulator."""
    plan, a = model.plan.blocks[i], model.arch
    b, n, dim = h.shape
    heads = a["heads"]
    d = dim // heads
    acc = _linear(model, f"b{i}.qkv", h)

    def split(part, rq):
        y = requantize_ref(acc[..., part * dim : (part + 1) * dim], rq)
        return y.reshape(b, n, heads, d).transpose(0, 2, 1, 3).reshape(b * heads, n, d)

    q, k, v = split(0, plan.rq_q), split(1, plan.rq_k), split(2, plan.rq_v)
    scores = requantize_ref(batch_matmul_ref(q, k), plan.rq_scores)
    probs = _nonlinear(tracer, "softmax", softmax_ref, scores, plan.softmax)
    ctx = requantize_ref(batch_matmul_ref(probs, v.transpose(0, 2, 1)), plan.rq_ctx)
    ctx = ctx.reshape(b, heads, n, d).transpose(0, 2, 1, 3).reshape(b, n, dim)
    return _linear(model, f"b{i}.proj", ctx)


def mlp_hidden(model: IntModel, i: int, h: np.ndarray, bp, tracer: Tracer | None = None):
    """Block ``i``'s fc1 and activation on int8 ``h``: int8 GELU output, or for GELU-less
    models (``bp.gelu is None``) ``requantize(relu(acc))`` in uint8 at the fc2 input scale."""
    acc = _linear(model, f"b{i}.fc1", h)
    if bp.gelu is None:
        return requantize_ref(np.maximum(acc, 0), bp.rq_fc1)
    return _nonlinear(tracer, "gelu", gelu_ref, requantize_ref(acc, bp.rq_fc1), bp.gelu)


def reference_forward(
    model: IntModel, q_in: np.ndarray, tracer: Tracer | None = None
) -> np.ndarray:
    """int8 images ``[B, C, H, W]`` -> int32 logit accumulators ``[B, heads_out, classes]``
    (one head, or two for distilled DeiT), at scale ``S_lnf * S_w[class]``."""
    if q_in.dtype != np.int8:
        raise ValueError(f"q_in must be int8 (use quantize_input), got {q_in.dtype}")
    if model.family == "swin":
        from intvit.quant.int_swin import swin_reference_forward

        return swin_reference_forward(model, q_in, tracer)
    a, t, plan = model.arch, model.tensors, model.plan
    lo, hi = plan.residual_range
    patches = im2col_ref(q_in, a["patch_size"])
    x = requantize_ref(_linear(model, "pe", patches), plan.rq_patch)
    x = add_tokens_ref(x, t["cls_q"], t["pos_q"], lo, hi)
    for i, bp in enumerate(plan.blocks):
        h = _nonlinear(tracer, "layernorm", layernorm_ref, x, bp.ln1)
        acc = attention(model, i, h, tracer)
        x = residual_add_ref(x, acc, bp.rq_skip1, bp.rq_proj, lo, hi)
        h = _nonlinear(tracer, "layernorm", layernorm_ref, x, bp.ln2)
        acc = _linear(model, f"b{i}.fc2", mlp_hidden(model, i, h, bp, tracer))
        x = residual_add_ref(x, acc, bp.rq_skip2, bp.rq_fc2, lo, hi)
    h = _nonlinear(tracer, "layernorm", layernorm_ref, x, plan.lnf)
    outs = [_linear(model, "head", h[:, 0])]
    if a["distilled"]:
        outs.append(_linear(model, "head_dist", h[:, 1]))
    return np.stack(outs, axis=1)


def dequantize_logits(model: IntModel, acc: np.ndarray) -> np.ndarray:
    """The one float step at the output: logits = acc * S_lnf * S_w (heads averaged)."""
    t = model.tensors
    s = model.scales["pool" if model.family == "swin" else "lnf"]
    names = ["head", "head_dist"][: acc.shape[1]]
    logits = [acc[:, j].astype(np.float64) * s * t[f"{n}.ws"] for j, n in enumerate(names)]
    return np.mean(logits, axis=0)


def predict(model: IntModel, images: np.ndarray) -> np.ndarray:
    """Float images -> float logits through the integer-only model."""
    return dequantize_logits(model, reference_forward(model, quantize_input(model, images)))

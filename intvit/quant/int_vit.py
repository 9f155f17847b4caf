"""The integer-only ViT/DeiT: its plan (every kernel's constants, derived from the scales by
the kernel helpers) and its bit-exact reference forward, for any
:class:`~intvit.quant.arch.VitArch` (per-block heads, attention dim, MLP width, low-rank
linears). The integer contract is :mod:`intvit.quant.int_model`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from intvit.quant.plan_common import BlockPlan, PlanBuilder
from intvit.quant.ref_common import Tracer, block_linear, linear, mlp_hidden, nonlinear
from intvit.topi.layernorm_ref import layernorm_ref
from intvit.topi.matmul_ref import batch_matmul_ref
from intvit.topi.registry import get_variant
from intvit.topi.requantize_params import RequantParams
from intvit.topi.requantize_ref import requantize_ref
from intvit.topi.residual_ref import add_tokens_ref, im2col_ref, residual_add_ref
from intvit.topi.softmax_ref import softmax_ref

if TYPE_CHECKING:
    from intvit.quant.int_model import IntModel


@dataclass
class ModelPlan:
    """Every kernel's constants, derived once from the model's scales by the kernel helpers."""

    rq_patch: RequantParams
    blocks: list[BlockPlan]
    lnf: object
    residual_range: tuple[int, int]

    @classmethod
    def build(cls, model: IntModel) -> ModelPlan:
        a, sc = model.arch, model.scales
        if len(model.m_star) not in (0, a.depth) or (
            get_variant("softmax", model.config.softmax).calibrated_m_star
            and len(model.m_star) != a.depth
        ):
            raise ValueError(
                f"m_star has {len(model.m_star)} entries for a model of depth {a.depth}"
            )
        pb = PlanBuilder(model)
        k_patch = a.in_chans * a.patch_size**2
        rq_patch = pb.linear_rq("pe", sc["input"], sc["res0"], k_patch, "int32")
        blocks, prev = [], "res0"
        for i, blk in enumerate(a.blocks):
            blocks.append(pb.block(i, prev, a.dim, blk, a.tokens))
            prev = f"b{i}.res2"
        lim = 2**pb.residual_bits
        return cls(rq_patch, blocks, pb.ln("lnf", "lnf", a.dim), (-lim, lim - 1))


def attention(model: IntModel, i: int, h: np.ndarray, tracer: Tracer | None = None) -> np.ndarray:
    """Block ``i``'s attention on int8 ``h [B, N, D]``: returns the int32 proj accumulator."""
    bp, blk = model.plan.blocks[i], model.arch.blocks[i]
    b, n, _ = h.shape
    heads, a, d = blk.heads, blk.attn_dim, blk.head_dim
    acc = block_linear(model, i, bp, "qkv", h)

    def split(part, rq):
        y = requantize_ref(acc[..., part * a : (part + 1) * a], rq)
        return y.reshape(b, n, heads, d).transpose(0, 2, 1, 3).reshape(b * heads, n, d)

    q, k, v = split(0, bp.rq_q), split(1, bp.rq_k), split(2, bp.rq_v)
    scores = requantize_ref(batch_matmul_ref(q, k), bp.rq_scores)
    probs = nonlinear(tracer, "softmax", softmax_ref, scores, bp.softmax)
    ctx = requantize_ref(batch_matmul_ref(probs, v.transpose(0, 2, 1)), bp.rq_ctx)
    ctx = ctx.reshape(b, heads, n, d).transpose(0, 2, 1, 3).reshape(b, n, a)
    return block_linear(model, i, bp, "proj", ctx)


def vit_reference_forward(
    model: IntModel, q_in: np.ndarray, tracer: Tracer | None = None
) -> np.ndarray:
    """int8 images ``[B, C, H, W]`` -> int32 logit accumulators ``[B, heads_out, classes]``
    (one head, or two for distilled DeiT), at scale ``S_lnf * S_w[class]``."""
    a, t, plan = model.arch, model.tensors, model.plan
    lo, hi = plan.residual_range
    patches = im2col_ref(q_in, a.patch_size)
    x = requantize_ref(linear(t, "pe", patches), plan.rq_patch)
    x = add_tokens_ref(x, t["cls_q"], t["pos_q"], lo, hi)
    for i, bp in enumerate(plan.blocks):
        h = nonlinear(tracer, "layernorm", layernorm_ref, x, bp.ln1)
        acc = attention(model, i, h, tracer)
        x = residual_add_ref(x, acc, bp.rq_skip1, bp.rq_proj, lo, hi)
        h = nonlinear(tracer, "layernorm", layernorm_ref, x, bp.ln2)
        acc = block_linear(model, i, bp, "fc2", mlp_hidden(model, i, h, bp, tracer))
        x = residual_add_ref(x, acc, bp.rq_skip2, bp.rq_fc2, lo, hi)
    h = nonlinear(tracer, "layernorm", layernorm_ref, x, plan.lnf)
    outs = [linear(t, "head", h[:, 0])]
    if a.distilled:
        outs.append(linear(t, "head_dist", h[:, 1]))
    return np.stack(outs, axis=1)

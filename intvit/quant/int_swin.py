"""Integer-only Swin: kernel constants from scales, and the bit-exact reference forward.

Beyond the ViT block (see :mod:`intvit.quant.int_vit`): the patch norm turns the per-channel
patch GEMM into the residual stream (LayerNorm with a 16-bit output); windows and cyclic
shifts are integer data movement; the relative position bias is folded into the score
accumulator as ``round(bias / (S_q S_k / sqrt(d)))`` before the requantization to int8;
masked (shifted-window) scores are set to ``MASKED`` in the int32 softmax input, far below any
row max, so every variant gives them 0; patch merging is data movement, LayerNorm and a GEMM;
the head averages tokens as an int32 sum requantized by ``1 / tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intvit.quant.plan_common import BlockPlan, PlanBuilder
from intvit.quant.ref_common import mlp_hidden, nonlinear
from intvit.topi.dyadic import bit_length
from intvit.topi.layernorm_ref import layernorm_ref
from intvit.topi.matmul_ref import batch_matmul_ref, dense_ref
from intvit.topi.registry import get_variant
from intvit.topi.requantize_params import RequantParams
from intvit.topi.requantize_ref import requantize_ref
from intvit.topi.residual_ref import (
    im2col_ref,
    residual_add_ref,
    token_sum_ref,
    unwindows_ref,
    window_scores_ref,
    windows_ref,
)
from intvit.topi.softmax_ref import softmax_ref

MASKED = -(2**15)


@dataclass
class SwinStagePlan:
    ln_merge: object | None
    rq_reduce: RequantParams | None
    blocks: list[BlockPlan]


@dataclass
class SwinPlan:
    rq_patch: RequantParams
    ln_patch: object
    stages: list[SwinStagePlan]
    lnf: object
    rq_pool: RequantParams
    residual_range: tuple[int, int]

    @classmethod
    def build(cls, model) -> SwinPlan:
        a, sc, t = model.arch, model.scales, model.tensors
        pb = PlanBuilder(model)
        calibrated = get_variant("softmax", model.config.softmax).calibrated_m_star
        if calibrated and len(model.m_star) != a.num_blocks:
            raise ValueError(
                f"m_star has {len(model.m_star)} entries for a model of {a.num_blocks} blocks"
            )
        k_patch = a.in_chans * a.patch_size**2
        rq_patch = pb.linear_rq("pe", sc["input"], sc["pe"], k_patch, "int32")
        ln_patch = pb.ln("pe_ln", "res0", a.embed_dim, out_dtype="int16")
        stages, prev, i = [], "res0", 0
        for s, st in enumerate(a.stages):
            dim = st.dim
            ln_merge = rq_reduce = None
            if st.merge:
                ln_merge = pb.ln(f"st{s}.merge_ln", f"st{s}.merge_ln", 2 * dim)
                rq_reduce = pb.linear_rq(
                    f"st{s}.reduce", sc[f"st{s}.merge_ln"], sc[f"st{s}.res_in"], 2 * dim, "int32"
                )
                prev = f"st{s}.res_in"
            blocks = []
            for blk in st.blocks:
                bias = t[f"b{i}.relbias"]
                blocks.append(pb.block(i, prev, dim, st.block_arch(), blk.window**2, rel_bias=bias))
                prev = f"b{i}.res2"
                i += 1
            stages.append(SwinStagePlan(ln_merge, rq_reduce, blocks))
        last = a.stages[-1]
        tokens = last.grid**2
        rq_pool = RequantParams.make(
            sc["lnf"] / tokens / sc["pool"], bit_length(tokens * 128), "int8", pb.product_bits
        )
        lim = 2**pb.residual_bits
        return cls(
            rq_patch, ln_patch, stages, pb.ln("lnf", "lnf", last.dim), rq_pool, (-lim, lim - 1)
        )


def swin_reference_forward(model, q_in: np.ndarray, tracer=None) -> np.ndarray:
    """int8 images -> int32 logit accumulators ``[B, 1, classes]`` at ``S_pool * S_w``."""
    a, t, plan = model.arch, model.tensors, model.plan
    lo, hi = plan.residual_range
    x = requantize_ref(
        dense_ref(im2col_ref(q_in, a.patch_size), t["pe.w"], t["pe.b"]), plan.rq_patch
    )
    x = nonlinear(tracer, "layernorm", layernorm_ref, x, plan.ln_patch).astype(np.int32)
    i = 0
    grid = a.img_size // a.patch_size
    for s, (st, sp) in enumerate(zip(a.stages, plan.stages, strict=True)):
        if st.merge:
            b, _, c = x.shape
            m = x.reshape(b, grid // 2, 2, grid // 2, 2, c).transpose(0, 1, 3, 4, 2, 5)
            grid //= 2
            m = nonlinear(
                tracer, "layernorm", layernorm_ref, m.reshape(b, grid * grid, 4 * c), sp.ln_merge
            )
            x = requantize_ref(
                dense_ref(m, t[f"st{s}.reduce.w"], t[f"st{s}.reduce.b"]), sp.rq_reduce
            )
        heads, dim = st.heads, st.dim
        d = dim // heads
        for blk, bp in zip(st.blocks, sp.blocks, strict=True):
            p = f"b{i}."
            ws, sh = blk.window, blk.shift
            n = ws * ws
            h = nonlinear(tracer, "layernorm", layernorm_ref, x, bp.ln1)
            win = windows_ref(h, grid, ws, sh)
            acc = dense_ref(win, t[p + "qkv.w"], t[p + "qkv.b"])

            def split(part, rq, acc=acc, dim=dim, n=n, heads=heads, d=d):
                y = requantize_ref(acc[..., part * dim : (part + 1) * dim], rq)
                return y.reshape(-1, n, heads, d).transpose(0, 2, 1, 3).reshape(-1, n, d)

            q, k, v = split(0, bp.rq_q), split(1, bp.rq_k), split(2, bp.rq_v)
            nw = (grid // ws) ** 2
            mask = t[p + "mask"] if sh else None
            scores = window_scores_ref(
                batch_matmul_ref(q, k), bp.score_bias, mask, nw, heads, bp.rq_scores, MASKED
            )
            probs = nonlinear(tracer, "softmax", softmax_ref, scores, bp.softmax)
            ctx = requantize_ref(batch_matmul_ref(probs, v.transpose(0, 2, 1)), bp.rq_ctx)
            ctx = ctx.reshape(-1, heads, n, d).transpose(0, 2, 1, 3).reshape(-1, n, dim)
            acc = unwindows_ref(dense_ref(ctx, t[p + "proj.w"], t[p + "proj.b"]), grid, ws, sh)
            x = residual_add_ref(x, acc, bp.rq_skip1, bp.rq_proj, lo, hi)
            h = nonlinear(tracer, "layernorm", layernorm_ref, x, bp.ln2)
            g = mlp_hidden(model, i, h, bp, tracer)
            acc = dense_ref(g, t[p + "fc2.w"], t[p + "fc2.b"])
            x = residual_add_ref(x, acc, bp.rq_skip2, bp.rq_fc2, lo, hi)
            i += 1
    h = nonlinear(tracer, "layernorm", layernorm_ref, x, plan.lnf)
    pooled = requantize_ref(token_sum_ref(h), plan.rq_pool)
    return dense_ref(pooled, t["head.w"], t["head.b"])[:, None, :]

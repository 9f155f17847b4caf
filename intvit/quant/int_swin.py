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

import math
from dataclasses import dataclass

import numpy as np

from intvit.topi.dyadic import bit_length
from intvit.topi.gelu_ref import gelu_ref
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


def _acc_bits(k: int, a_max: int = 128, w_max: int = 127) -> int:
    return bit_length(k * a_max * w_max)


@dataclass
class SwinBlockPlan:
    ln1: object
    rq_q: RequantParams
    rq_k: RequantParams
    rq_v: RequantParams
    score_bias: np.ndarray  # int32 [heads, n, n] in accumulator units
    rq_scores: RequantParams
    softmax: object
    rq_ctx: RequantParams
    rq_skip1: RequantParams
    rq_proj: RequantParams
    ln2: object
    rq_fc1: RequantParams
    gelu: object
    rq_skip2: RequantParams
    rq_fc2: RequantParams


@dataclass
class SwinStagePlan:
    ln_merge: object | None
    rq_reduce: RequantParams | None
    blocks: list[SwinBlockPlan]


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
        a, cfg, sc, t = model.arch, model.config, model.scales, model.tensors
        pb = cfg.requant_product_bits
        rbits = cfg.residual_bits - 1
        ln_v = get_variant("layernorm", cfg.layernorm)
        sm_v, gl_v = get_variant("softmax", cfg.softmax), get_variant("gelu", cfg.gelu)

        def linear_rq(layer, in_scale, out_scale, k, out_dtype="int8", sl=slice(None)):
            ws = t[f"{layer}.ws"].astype(np.float64)[sl]
            return RequantParams.make(in_scale * ws / out_scale, _acc_bits(k), out_dtype, pb)

        def ln(key, out_point, channels, in_bits=rbits, out_dtype="int8"):
            return ln_v.make_params(
                channels,
                t[f"{key}.gamma"].astype(np.float64),
                t[f"{key}.beta"].astype(np.float64),
                sc[out_point],
                in_bits=in_bits,
                out_dtype=out_dtype,
            )

        def res_rq(src, dst):
            return RequantParams.make(sc[src] / sc[dst], rbits, "int32", pb)

        k_patch = a["in_chans"] * a["patch_size"] ** 2
        rq_patch = linear_rq("pe", sc["input"], sc["pe"], k_patch, "int32")
        ln_patch = ln("pe_ln", "res0", a["embed_dim"], out_dtype="int16")
        stages, prev, i = [], "res0", 0
        for s, st in enumerate(a["stages"]):
            dim, heads = st["dim"], st["heads"]
            d = dim // heads
            ln_merge = rq_reduce = None
            if st["merge"]:
                ln_merge = ln(f"st{s}.merge_ln", f"st{s}.merge_ln", 2 * dim)
                rq_reduce = linear_rq(
                    f"st{s}.reduce", sc[f"st{s}.merge_ln"], sc[f"st{s}.res_in"], 2 * dim, "int32"
                )
                prev = f"st{s}.res_in"
            blocks = []
            for blk in st["blocks"]:
                p = f"b{i}."
                n = blk["window"] ** 2
                acc_scale = sc[p + "q"] * sc[p + "k"] / math.sqrt(d)
                bias = np.round(t[p + "relbias"].astype(np.float64) / acc_scale)
                kw = {"m_star": model.m_star[i]} if cfg.softmax == "edge" else {}
                softmax = sm_v.make_params(sc[p + "scores"], n, cfg.softmax_bits, **kw)
                s_in = sc[p + "ln1"]
                blocks.append(
                    SwinBlockPlan(
                        ln1=ln(p + "ln1", p + "ln1", dim),
                        rq_q=linear_rq(p + "qkv", s_in, sc[p + "q"], dim, sl=slice(0, dim)),
                        rq_k=linear_rq(p + "qkv", s_in, sc[p + "k"], dim, sl=slice(dim, 2 * dim)),
                        rq_v=linear_rq(p + "qkv", s_in, sc[p + "v"], dim, sl=slice(2 * dim, None)),
                        score_bias=np.clip(bias, -(2**30), 2**30).astype(np.int32),
                        rq_scores=RequantParams.make(
                            acc_scale / sc[p + "scores"], min(30, _acc_bits(d) + 1), "int8", pb
                        ),
                        softmax=softmax,
                        rq_ctx=RequantParams.make(
                            softmax.out_scale * sc[p + "v"] / sc[p + "ctx"],
                            _acc_bits(n, 255, 128),
                            "int8",
                            pb,
                        ),
                        rq_skip1=res_rq(prev, p + "res1"),
                        rq_proj=linear_rq(p + "proj", sc[p + "ctx"], sc[p + "res1"], dim, "int32"),
                        ln2=ln(p + "ln2", p + "ln2", dim),
                        rq_fc1=linear_rq(p + "fc1", sc[p + "ln2"], sc[p + "fc1"], dim),
                        gelu=gl_v.make_params(sc[p + "fc1"], sc[p + "gelu"], in_bits=7),
                        rq_skip2=res_rq(p + "res1", p + "res2"),
                        rq_fc2=linear_rq(
                            p + "fc2", sc[p + "gelu"], sc[p + "res2"], st["mlp_hidden"], "int32"
                        ),
                    )
                )
                prev = p + "res2"
                i += 1
            stages.append(SwinStagePlan(ln_merge, rq_reduce, blocks))
        last = a["stages"][-1]
        tokens = last["grid"] ** 2
        lnf = ln("lnf", "lnf", last["dim"])
        rq_pool = RequantParams.make(
            sc["lnf"] / tokens / sc["pool"], bit_length(tokens * 128), "int8", pb
        )
        lim = 2**rbits
        return cls(rq_patch, ln_patch, stages, lnf, rq_pool, (-lim, lim - 1))


def swin_reference_forward(model, q_in: np.ndarray, tracer=None) -> np.ndarray:
    """int8 images -> int32 logit accumulators ``[B, 1, classes]`` at ``S_pool * S_w``."""
    from intvit.quant.reference import _nonlinear

    a, t, plan = model.arch, model.tensors, model.plan
    lo, hi = plan.residual_range
    x = requantize_ref(
        dense_ref(im2col_ref(q_in, a["patch_size"]), t["pe.w"], t["pe.b"]), plan.rq_patch
    )
    x = _nonlinear(tracer, "layernorm", layernorm_ref, x, plan.ln_patch).astype(np.int32)
    i = 0
    grid = a["img_size"] // a["patch_size"]
    for s, (st, sp) in enumerate(zip(a["stages"], plan.stages, strict=True)):
        if st["merge"]:
            b, _, c = x.shape
            m = x.reshape(b, grid // 2, 2, grid // 2, 2, c).transpose(0, 1, 3, 4, 2, 5)
            grid //= 2
            m = _nonlinear(
                tracer, "layernorm", layernorm_ref, m.reshape(b, grid * grid, 4 * c), sp.ln_merge
            )
            x = requantize_ref(
                dense_ref(m, t[f"st{s}.reduce.w"], t[f"st{s}.reduce.b"]), sp.rq_reduce
            )
        heads = st["heads"]
        d = st["dim"] // heads
        for blk, bp in zip(st["blocks"], sp.blocks, strict=True):
            p = f"b{i}."
            ws, sh = blk["window"], blk["shift"]
            n = ws * ws
            h = _nonlinear(tracer, "layernorm", layernorm_ref, x, bp.ln1)
            win = windows_ref(h, grid, ws, sh)
            acc = dense_ref(win, t[p + "qkv.w"], t[p + "qkv.b"])
            dim = st["dim"]

            def split(part, rq, acc=acc, dim=dim, n=n, heads=heads, d=d):
                y = requantize_ref(acc[..., part * dim : (part + 1) * dim], rq)
                return y.reshape(-1, n, heads, d).transpose(0, 2, 1, 3).reshape(-1, n, d)

            q, k, v = split(0, bp.rq_q), split(1, bp.rq_k), split(2, bp.rq_v)
            nw = (grid // ws) ** 2
            mask = t[p + "mask"] if sh else None
            scores = window_scores_ref(
                batch_matmul_ref(q, k), bp.score_bias, mask, nw, heads, bp.rq_scores, MASKED
            )
            probs = _nonlinear(tracer, "softmax", softmax_ref, scores, bp.softmax)
            ctx = requantize_ref(batch_matmul_ref(probs, v.transpose(0, 2, 1)), bp.rq_ctx)
            ctx = ctx.reshape(-1, heads, n, d).transpose(0, 2, 1, 3).reshape(-1, n, dim)
            acc = unwindows_ref(dense_ref(ctx, t[p + "proj.w"], t[p + "proj.b"]), grid, ws, sh)
            x = residual_add_ref(x, acc, bp.rq_skip1, bp.rq_proj, lo, hi)
            h = _nonlinear(tracer, "layernorm", layernorm_ref, x, bp.ln2)
            f = requantize_ref(dense_ref(h, t[p + "fc1.w"], t[p + "fc1.b"]), bp.rq_fc1)
            g = _nonlinear(tracer, "gelu", gelu_ref, f, bp.gelu)
            acc = dense_ref(g, t[p + "fc2.w"], t[p + "fc2.b"])
            x = residual_add_ref(x, acc, bp.rq_skip2, bp.rq_fc2, lo, hi)
            i += 1
    h = _nonlinear(tracer, "layernorm", layernorm_ref, x, plan.lnf)
    pooled = requantize_ref(token_sum_ref(h), plan.rq_pool)
    return dense_ref(pooled, t["head.w"], t["head.b"])[:, None, :]

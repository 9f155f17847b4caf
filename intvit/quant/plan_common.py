"""What the ViT and Swin plans share: the per-block kernel constants derived from scales."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from intvit.quant.arch import BlockArch
from intvit.topi.dyadic import bit_length
from intvit.topi.registry import get_variant
from intvit.topi.requantize_params import RequantParams


def acc_bits(k: int, a_max: int = 128, w_max: int = 127) -> int:
    """Magnitude bits of a K-deep int8/uint8 x int8 accumulator."""
    return bit_length(k * a_max * w_max)


def named(what: str, make, *args, **kwargs):
    """``make(*args, **kwargs)`` (a kernel's parameter maker), its ValueError (a NaN or
    out-of-range scale or ratio) naming ``what`` it was for: the layer, tensor or scales."""
    try:
        return make(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def named_requant(what: str, ratio, acc_bits_: int, out_dtype: str, product_bits: int):
    """:meth:`RequantParams.make` for ``what`` is requantized (named in its errors)."""
    return named(
        f"requantizing {what}", RequantParams.make, ratio, acc_bits_, out_dtype, product_bits
    )


@dataclass
class BlockPlan:
    """One transformer block's constants. ``score_bias`` (Swin): int32 ``[heads, n, n]`` added
    to the score accumulator before its requantization.

    ``gelu`` is ``None`` for GELU-less models (the ``relu`` variant): then ``rq_fc1`` takes
    the fc1 accumulator straight to uint8 at the fc2 input scale, and its saturation at 0 is
    the ReLU (``requantize(max(acc, 0)) == requantize(acc)`` clamped to ``[0, 255]``, as the
    requantization is monotone with no offset), so no activation kernel runs at all.

    ``low_rank``: for each low-rank linear of the block (``qkv``, ...), the requantization of
    its first factor's int32 accumulator to the int8 rank-r intermediate (the second factor's
    input); the linear's own ``rq_*`` then takes the second factor's accumulator.
    """

    ln1: object
    rq_q: RequantParams
    rq_k: RequantParams
    rq_v: RequantParams
    rq_scores: RequantParams
    softmax: object
    rq_ctx: RequantParams
    rq_skip1: RequantParams
    rq_proj: RequantParams
    ln2: object
    rq_fc1: RequantParams
    gelu: object | None
    rq_skip2: RequantParams
    rq_fc2: RequantParams
    score_bias: np.ndarray | None = None
    low_rank: dict[str, RequantParams] = field(default_factory=dict)


class PlanBuilder:
    """Derives kernel constants from a model's scales and tensors with the kernel helpers."""

    def __init__(self, model) -> None:
        self.model = model
        cfg = model.config
        self.scales, self.tensors = model.scales, model.tensors
        self.product_bits = cfg.requant_product_bits
        self.residual_bits = cfg.residual_bits - 1
        self.layernorm = get_variant("layernorm", cfg.layernorm)
        self.softmax = get_variant("softmax", cfg.softmax)
        self.gelu = get_variant("gelu", cfg.gelu)

    def linear_rq(self, layer, in_scale, out_scale, k, out_dtype="int8", sl=slice(None), a_max=128):
        """The requantization of ``layer``'s accumulator (``k`` products of inputs up to
        ``a_max`` in magnitude: 255 for uint8 inputs) from ``in_scale * S_w`` to
        ``out_scale``."""
        ws = self.tensors[f"{layer}.ws"].astype(np.float64)[sl]
        return named_requant(
            f"{layer} (weight scales {layer}.ws)",
            in_scale * ws / out_scale,
            acc_bits(k, a_max),
            out_dtype,
            self.product_bits,
        )

    def ln(self, key, out_point, channels, out_dtype="int8"):
        t = self.tensors
        return named(
            f"LayerNorm {key} (scale {out_point!r})",
            self.layernorm.make_params,
            channels,
            t[f"{key}.gamma"].astype(np.float64),
            t[f"{key}.beta"].astype(np.float64),
            self.scales[out_point],
            in_bits=self.residual_bits,
            out_dtype=out_dtype,
        )

    def res_rq(self, src: str, dst: str) -> RequantParams:
        return named_requant(
            f"the residual from scale {src!r} to {dst!r}",
            self.scales[src] / self.scales[dst],
            self.residual_bits,
            "int32",
            self.product_bits,
        )

    def block(
        self,
        i: int,
        prev: str,
        dim: int,
        blk: BlockArch,
        tokens: int,
        rel_bias: np.ndarray | None = None,
    ) -> BlockPlan:
        """Block ``i`` (points ``b{i}.*``) of embedding ``dim``, its residual input at point
        ``prev``."""
        sc, p = self.scales, f"b{i}."
        a, d = blk.attn_dim, blk.head_dim
        acc_scale = sc[p + "q"] * sc[p + "k"] / math.sqrt(d)
        score_bias = None
        if rel_bias is not None:
            bias = np.round(rel_bias.astype(np.float64) / acc_scale)
            score_bias = np.clip(bias, -(2**30), 2**30).astype(np.int32)
        kw = {"m_star": self.model.m_star[i]} if self.softmax.calibrated_m_star else {}
        softmax = named(
            f"the softmax of block {i} (scale {p}scores)",
            self.softmax.make_params,
            sc[p + "scores"],
            tokens,
            self.model.config.softmax_bits,
            **kw,
        )
        relu = self.gelu.fused_relu  # GELU-less: ReLU is the uint8 saturation of rq_fc1
        low_rank: dict[str, RequantParams] = {}

        def second(layer: str, in_point: str, k: int, a_max: int = 128) -> tuple[float, int, int]:
            """(input scale, depth, input bound) of the GEMM that gives ``layer``'s output:
            the layer itself, or for a low-rank one its second factor, whose int8 input is
            the first factor's requantized accumulator."""
            r = blk.rank(layer)
            if r is None:
                return sc[in_point], k, a_max
            mid = sc[p + layer + "_lr"]
            low_rank[layer] = self.linear_rq(p + layer + ".lr", sc[in_point], mid, k, a_max=a_max)
            return mid, r, 128

        s_qkv, k_qkv, _ = second("qkv", p + "ln1", dim)
        s_proj, k_proj, _ = second("proj", p + "ctx", a)
        s_fc1, k_fc1, _ = second("fc1", p + "ln2", dim)
        s_fc2, k_fc2, a_fc2 = second("fc2", p + "gelu", blk.mlp_hidden, 255 if relu else 128)
        if relu:
            rq_fc1 = self.linear_rq(p + "fc1", s_fc1, sc[p + "gelu"], k_fc1, "uint8")
            gelu = None
        else:
            rq_fc1 = self.linear_rq(p + "fc1", s_fc1, sc[p + "fc1"], k_fc1)
            gelu = named(
                f"the GELU of block {i} (scales {p}fc1, {p}gelu)",
                self.gelu.make_params,
                sc[p + "fc1"],
                sc[p + "gelu"],
                in_bits=7,
            )
        qkv = p + "qkv"
        return BlockPlan(
            ln1=self.ln(p + "ln1", p + "ln1", dim),
            rq_q=self.linear_rq(qkv, s_qkv, sc[p + "q"], k_qkv, sl=slice(0, a)),
            rq_k=self.linear_rq(qkv, s_qkv, sc[p + "k"], k_qkv, sl=slice(a, 2 * a)),
            rq_v=self.linear_rq(qkv, s_qkv, sc[p + "v"], k_qkv, sl=slice(2 * a, None)),
            rq_scores=named_requant(
                f"the attention scores of block {i} (scales {p}q, {p}k, {p}scores)",
                acc_scale / sc[p + "scores"],
                min(30, acc_bits(d, 128, 128) + 1),
                "int8",
                self.product_bits,
            ),
            softmax=softmax,
            rq_ctx=named_requant(
                f"the attention context of block {i} (scales {p}v, {p}ctx)",
                softmax.out_scale * sc[p + "v"] / sc[p + "ctx"],
                acc_bits(tokens, 255, 128),
                "int8",
                self.product_bits,
            ),
            rq_skip1=self.res_rq(prev, p + "res1"),
            rq_proj=self.linear_rq(p + "proj", s_proj, sc[p + "res1"], k_proj, "int32"),
            ln2=self.ln(p + "ln2", p + "ln2", dim),
            rq_fc1=rq_fc1,
            gelu=gelu,
            rq_skip2=self.res_rq(p + "res1", p + "res2"),
            rq_fc2=self.linear_rq(p + "fc2", s_fc2, sc[p + "res2"], k_fc2, "int32", a_max=a_fc2),
            score_bias=score_bias,
            low_rank=low_rank,
        )

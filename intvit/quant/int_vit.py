"""The integer-only ViT/DeiT: integer weights, activation scales, and the kernel constants
derived from them.

Integer contract, per block (``D`` channels, ``H`` heads, ``N`` tokens):
- the residual stream ``x`` is int32 holding ``residual_bits``-bit values at a per-position
  scale; LayerNorm turns it into int8;
- q, k, v, attention scores, the attention context, the GELU input and output are int8 per
  tensor; softmax probabilities are uint8 at the variant's output scale;
- every GEMM is int8 (or uint8) x int8 -> int32 with an int32 bias; every scale change is a
  dyadic requantization; residual adds rescale both operands to the new scale, then saturate.
Only the input quantization and the final dequantization of the logits use float.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from intvit.quant.config import QuantConfig
from intvit.topi.dyadic import bit_length
from intvit.topi.registry import get_variant
from intvit.topi.requantize_params import RequantParams

#: Per-block activation points that carry a scale.
BLOCK_POINTS = ("ln1", "q", "k", "v", "scores", "ctx", "res1", "ln2", "fc1", "gelu", "res2")
LINEARS = ("qkv", "proj", "fc1", "fc2")


@dataclass
class IntModel:
    """An integer-only ViT, DeiT (``arch["family"] == "vit"``) or Swin (``"swin"``).

    ``tensors``: int8 weights ``<layer>.w``, int32 biases ``<layer>.b``, float32 per-channel
    weight scales ``<layer>.ws``, int32 ``cls_q``/``pos_q`` at the ``res0`` scale, float32
    LayerNorm ``gamma``/``beta`` (folded into dyadic constants when the plan is built).
    ``scales``: float activation scales by point. ``m_star``: the edge softmax's calibrated
    ``M*`` per block (empty for other variants).
    """

    arch: dict
    config: QuantConfig
    scales: dict[str, float]
    tensors: dict[str, np.ndarray]
    m_star: list[int] = field(default_factory=list)
    source: str = ""

    @property
    def tokens(self) -> int:
        return (self.arch["img_size"] // self.arch["patch_size"]) ** 2 + self.arch["prefix_tokens"]

    @property
    def family(self) -> str:
        return self.arch["family"]

    @property
    def num_blocks(self) -> int:
        if self.family == "swin":
            return sum(len(st["blocks"]) for st in self.arch["stages"])
        return self.arch["depth"]

    @functools.cached_property
    def plan(self):
        if self.family == "swin":
            from intvit.quant.int_swin import SwinPlan

            return SwinPlan.build(self)
        return ModelPlan.build(self)


def _acc_bits(k: int, a_max: int = 128, w_max: int = 127) -> int:
    return bit_length(k * a_max * w_max)


@dataclass
class BlockPlan:
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
    gelu: object
    rq_skip2: RequantParams
    rq_fc2: RequantParams


@dataclass
class ModelPlan:
    """Every kernel's constants, derived once from the model's scales by the kernel helpers."""

    rq_patch: RequantParams
    blocks: list[BlockPlan]
    lnf: object
    residual_range: tuple[int, int]

    @classmethod
    def build(cls, model: IntModel) -> ModelPlan:
        a, cfg, sc, t = model.arch, model.config, model.scales, model.tensors
        dim, heads = a["dim"], a["heads"]
        d = dim // heads
        pb = cfg.requant_product_bits
        rbits = cfg.residual_bits - 1
        res_dtype = "int32"

        def linear_rq(layer, in_scale, out_scale, k, out_dtype="int8", sl=slice(None)):
            ws = t[f"{layer}.ws"].astype(np.float64)[sl]
            return RequantParams.make(in_scale * ws / out_scale, _acc_bits(k), out_dtype, pb)

        def ln(name, out_point, gamma_key):
            v = get_variant("layernorm", cfg.layernorm)
            return v.make_params(
                dim,
                t[f"{gamma_key}.gamma"].astype(np.float64),
                t[f"{gamma_key}.beta"].astype(np.float64),
                sc[out_point],
                in_bits=rbits,
            )

        k_patch = a["in_chans"] * a["patch_size"] ** 2
        rq_patch = linear_rq("pe", sc["input"], sc["res0"], k_patch, res_dtype)
        blocks = []
        prev = "res0"
        sm = get_variant("softmax", cfg.softmax)
        gl = get_variant("gelu", cfg.gelu)
        for i in range(a["depth"]):
            p = f"b{i}."
            s_in = sc[p + "ln1"]
            sm_kwargs = {"m_star": model.m_star[i]} if cfg.softmax == "edge" else {}
            softmax = sm.make_params(sc[p + "scores"], model.tokens, cfg.softmax_bits, **sm_kwargs)
            blocks.append(
                BlockPlan(
                    ln1=ln(p + "ln1", p + "ln1", p + "ln1"),
                    rq_q=linear_rq(p + "qkv", s_in, sc[p + "q"], dim, sl=slice(0, dim)),
                    rq_k=linear_rq(p + "qkv", s_in, sc[p + "k"], dim, sl=slice(dim, 2 * dim)),
                    rq_v=linear_rq(p + "qkv", s_in, sc[p + "v"], dim, sl=slice(2 * dim, None)),
                    rq_scores=RequantParams.make(
                        sc[p + "q"] * sc[p + "k"] / math.sqrt(d) / sc[p + "scores"],
                        _acc_bits(d),
                        "int8",
                        pb,
                    ),
                    softmax=softmax,
                    rq_ctx=RequantParams.make(
                        softmax.out_scale * sc[p + "v"] / sc[p + "ctx"],
                        _acc_bits(model.tokens, 255, 128),
                        "int8",
                        pb,
                    ),
                    rq_skip1=RequantParams.make(sc[prev] / sc[p + "res1"], rbits, res_dtype, pb),
                    rq_proj=linear_rq(p + "proj", sc[p + "ctx"], sc[p + "res1"], dim, res_dtype),
                    ln2=ln(p + "ln2", p + "ln2", p + "ln2"),
                    rq_fc1=linear_rq(p + "fc1", sc[p + "ln2"], sc[p + "fc1"], dim),
                    gelu=gl.make_params(sc[p + "fc1"], sc[p + "gelu"], in_bits=7),
                    rq_skip2=RequantParams.make(
                        sc[p + "res1"] / sc[p + "res2"], rbits, res_dtype, pb
                    ),
                    rq_fc2=linear_rq(
                        p + "fc2", sc[p + "gelu"], sc[p + "res2"], a["mlp_hidden"], res_dtype
                    ),
                )
            )
            prev = p + "res2"
        lnf = ln("lnf", "lnf", "lnf")
        lim = 2**rbits
        return cls(rq_patch, blocks, lnf, (-lim, lim - 1))

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
from dataclasses import dataclass, field

import numpy as np

from intvit.quant.config import QuantConfig
from intvit.quant.plan_common import BlockPlan, PlanBuilder
from intvit.topi.requantize_params import RequantParams

#: Per-block activation points that carry a scale.
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
        pb = PlanBuilder(model)
        k_patch = a["in_chans"] * a["patch_size"] ** 2
        rq_patch = pb.linear_rq("pe", sc["input"], sc["res0"], k_patch, "int32")
        blocks, prev = [], "res0"
        for i in range(a["depth"]):
            blocks.append(pb.block(i, prev, a["dim"], a["heads"], model.tokens, a["mlp_hidden"]))
            prev = f"b{i}.res2"
        lim = 2**pb.residual_bits
        return cls(rq_patch, blocks, pb.ln("lnf", "lnf", a["dim"]), (-lim, lim - 1))

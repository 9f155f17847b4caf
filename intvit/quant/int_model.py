"""The integer-only model: its typed arch, quantization config, activation scales and integer
tensors; the kernel constants (its plan) are derived from them once, by its family.

Integer contract, per ViT block (``D`` channels, ``A`` attention channels, ``H`` heads, ``N``
tokens):
- the residual stream ``x`` is int32 holding ``residual_bits``-bit values at a per-position
  scale; LayerNorm turns it into int8;
- q, k, v, attention scores, the attention context, the GELU input and output, and the rank-r
  intermediate of every low-rank linear are int8 per tensor; softmax probabilities are uint8
  at the variant's output scale;
- every GEMM is int8 (or uint8) x int8 -> int32 with an int32 bias; every scale change is a
  dyadic requantization; residual adds rescale both operands to the new scale, then saturate.
Only the input quantization and the final dequantization of the logits use float.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from intvit.quant.arch import Arch
from intvit.quant.config import QuantConfig


@dataclass
class IntModel:
    """An integer-only ViT, DeiT (:class:`~intvit.quant.arch.VitArch`) or Swin
    (:class:`~intvit.quant.arch.SwinArch`).

    ``tensors``: int8 weights ``<layer>.w``, int32 biases ``<layer>.b``, float32 per-channel
    weight scales ``<layer>.ws`` (a low-rank linear adds its first factor as ``<layer>.lr.w``,
    ``.lr.b``, ``.lr.ws``), int32 ``cls_q``/``pos_q`` at the ``res0`` scale, float32
    LayerNorm ``gamma``/``beta`` (folded into dyadic constants when the plan is built).
    ``scales``: float activation scales by point. ``m_star``: the edge softmax's calibrated
    ``M*`` per block (empty for other variants).
    """

    arch: Arch
    config: QuantConfig
    scales: dict[str, float]
    tensors: dict[str, np.ndarray]
    m_star: list[int] = field(default_factory=list)
    source: str = ""

    @property
    def family(self) -> str:
        return self.arch.family

    @property
    def num_blocks(self) -> int:
        return self.arch.num_blocks

    @property
    def tokens(self) -> int:
        return self.arch.tokens

    @functools.cached_property
    def plan(self):
        """Every kernel's constants (:class:`~intvit.quant.int_vit.ModelPlan` or
        :class:`~intvit.quant.int_swin.SwinPlan`)."""
        from intvit.quant.family import get_family

        return get_family(self.family).build_plan(self)

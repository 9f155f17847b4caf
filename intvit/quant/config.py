"""QuantConfig: which kernel variant each operator uses and the bit widths."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from intvit.topi.contract import check_choice, check_int_range
from intvit.topi.registry import get_variant

CONFIG_VERSION = 1


@dataclass(frozen=True)
class QuantConfig:
    """Integer-only ViT settings. Activations int8 per tensor; weights symmetric per output
    channel, ``weight_bits`` wide (8: +-127; 7: +-63, which x86 AVX2's ``vpmaddubsw``
    micro-kernel sums exactly at 1.2x the GEMM speed, the trade ONNX Runtime's
    ``reduce_range`` makes); the residual stream int32 holding ``residual_bits``-bit values
    (the LayerNorm input); softmax probabilities ``softmax_bits`` wide.
    """

    softmax: str = "edge"
    gelu: str = "lut"
    layernorm: str = "edge"
    observer: str = "minmax"
    residual_bits: int = 16
    softmax_bits: int = 8
    m_star_method: str = "mse"
    requant_product_bits: int = 64
    weight_bits: int = 8
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        get_variant("softmax", self.softmax)
        get_variant("gelu", self.gelu)
        get_variant("layernorm", self.layernorm)
        from intvit.quant.observers import OBSERVERS

        check_choice("observer", self.observer, tuple(OBSERVERS))
        check_int_range("residual_bits", self.residual_bits, 8, 16)
        check_int_range("softmax_bits", self.softmax_bits, 4, 8)
        check_choice("m_star_method", self.m_star_method, ("mse", "output"))
        check_choice("requant_product_bits", self.requant_product_bits, (32, 64))
        check_choice("weight_bits", self.weight_bits, (7, 8))
        if self.version != CONFIG_VERSION:
            raise ValueError(
                f"QuantConfig version {self.version} is not supported (this is {CONFIG_VERSION})"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> QuantConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown QuantConfig fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    @property
    def label(self) -> str:
        label = f"softmax={self.softmax},gelu={self.gelu},layernorm={self.layernorm}"
        return label if self.weight_bits == 8 else f"{label},weight_bits={self.weight_bits}"

"""One registry of integer kernel variants, looked up by ``(op, name)``.

Each entry ties a variant's params helper, NumPy reference and TE compute together with what
it promises (``int32_safe``: every intermediate fits int32 on the documented input range).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from intvit.topi import (
    gelu,
    gelu_params,
    gelu_ref,
    layernorm,
    layernorm_params,
    layernorm_ref,
    softmax,
    softmax_params,
    softmax_ref,
)


@dataclass(frozen=True)
class KernelVariant:
    op: str
    name: str
    make_params: Callable
    reference: Callable
    compute: Callable
    int32_safe: bool
    source: str
    #: Schedule hint: TVM's explicit vectorization beats LLVM's auto-vectorizer (measured
    #: for the kernels with a per-element integer division).
    explicit_vectorize: bool = False
    #: Softmax: its exponentials' width depends on a per-block ``m_star`` found at
    #: calibration (the model carries one per block).
    calibrated_m_star: bool = False
    #: GELU: a compile-time table the graph passes as a constant input, not rebuilt per call.
    table_input: bool = False
    #: GELU: no kernel at all; ReLU is the uint8 saturation of fc1's requantization (its
    #: output range is [0, 255], so calibration observes fc1's output with 255 levels).
    fused_relu: bool = False


_REGISTRY: dict[tuple[str, str], KernelVariant] = {}


def register(variant: KernelVariant) -> KernelVariant:
    key = (variant.op, variant.name)
    if key in _REGISTRY:
        raise ValueError(f"kernel variant {key} is already registered")
    _REGISTRY[key] = variant
    return variant


def get_variant(op: str, name: str) -> KernelVariant:
    if (op, name) not in _REGISTRY:
        names = ", ".join(sorted(n for o, n in _REGISTRY if o == op)) or "none"
        ops = ", ".join(sorted({o for o, _ in _REGISTRY}))
        raise ValueError(
            f"unknown {op} variant {name!r}; known {op} variants: {names} (ops: {ops})"
        )
    return _REGISTRY[(op, name)]


def list_variants(op: str | None = None) -> list[KernelVariant]:
    return [v for (o, _), v in sorted(_REGISTRY.items()) if op is None or o == op]


def _softmax(name: str, safe: bool, source: str, **flags: bool) -> None:
    register(
        KernelVariant(
            "softmax",
            name,
            lambda scale, row_len, out_bits=8, **kw: softmax_params.softmax_params(
                name, scale, row_len, out_bits, **kw
            ),
            softmax_ref.softmax_ref,
            softmax.softmax,
            safe,
            source,
            **flags,
        )
    )


def _gelu(name: str, safe: bool, source: str, **flags: bool) -> None:
    register(
        KernelVariant(
            "gelu",
            name,
            lambda scale, out_scale, in_bits=7, **kw: gelu_params.gelu_params(
                name, scale, out_scale, in_bits, **kw
            ),
            gelu_ref.gelu_ref,
            gelu.gelu,
            safe,
            source,
            **flags,
        )
    )


def _layernorm(name: str, safe: bool, source: str) -> None:
    register(
        KernelVariant(
            "layernorm",
            name,
            lambda channels, gamma=1.0, beta=0.0, out_scale=1 / 32, **kw: (
                layernorm_params.layernorm_params(name, channels, gamma, beta, out_scale, **kw)
            ),
            layernorm_ref.layernorm_ref,
            layernorm.layernorm,
            safe,
            source,
        )
    )


_softmax("ibert", False, "I-BERT (authors' code), polynomial exp, n=30, 16-bit exps")
_softmax("shiftmax", False, "I-ViT Shiftmax (authors' PyTorch IntSoftmax), n=15")
_softmax(
    "edge",
    True,
    "Edge kernels (MLSys'23): int32-safe, exps requantized to 31-M* bits",
    calibrated_m_star=True,
)
_gelu("ibert", False, "I-BERT i-GELU (authors' IntGELU)")
_gelu(
    "shiftgelu",
    False,
    "I-ViT ShiftGELU (authors' PyTorch IntGELU), n=23",
    explicit_vectorize=True,
)
_gelu(
    "sigmoid1702",
    False,
    "MCUFormer x*sigmoid(1.702x), elementwise ShiftExp sigmoid",
    explicit_vectorize=True,
)
_gelu("edge", True, "Edge kernels (MLSys'23): input requantized to 9 bits, i-GELU in int32")
_gelu(
    "lut",
    True,
    "intvit: exact-rounding GELU of int8 inputs, a 256-entry compile-time table",
    table_input=True,
)
_gelu("relu", True, "GELU-less Swin (2024): GELU replaced by ReLU", fused_relu=True)
_layernorm("ilayernorm", False, "I-ViT I-LayerNorm (authors' IntLayerNorm)")
_layernorm("edge", True, "Edge kernels (MLSys'23): M=15, int32 with a per-row shift and reciprocal")

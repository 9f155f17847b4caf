"""Accuracy of each integer kernel against its float function, in output LSBs.

The inputs are realistic activations, made here: Gaussian, and heavy-tailed (Student-t with
3 degrees of freedom, as ViT activations with outlier channels are). Each case quantizes the
float input to the kernel's integer input, runs the NumPy reference, and compares the
dequantized output with the float function of the *dequantized input* (so the error is the
kernel's own, not the input quantization's), in units of the output scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from intvit.topi.registry import get_variant

DISTRIBUTIONS = ("gaussian", "heavy_tailed")


@dataclass(frozen=True)
class AccuracyResult:
    op: str
    variant: str
    distribution: str
    max_lsb: float
    mean_lsb: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def sample(distribution: str, shape: tuple[int, ...], rng: np.random.Generator, std: float):
    if distribution == "gaussian":
        return rng.normal(0.0, std, shape)
    return rng.standard_t(3, shape) * std / math.sqrt(3.0)


def float_gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def float_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def float_layernorm(x, gamma, beta, eps=1e-6):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def _stats(got, want, out_scale):
    err = np.abs(got.astype(np.float64) * out_scale - want) / out_scale
    return float(err.max()), float(err.mean())


def softmax_accuracy(variant: str, distribution: str, seed: int = 0) -> AccuracyResult:
    """Attention logits (12 heads x 197 x 197 rows of a ViT, std 2), int8 at max-abs scale."""
    rng = np.random.default_rng(seed)
    x = sample(distribution, (12, 197, 197), rng, 2.0)
    scale = float(np.abs(x).max()) / 127
    q = np.clip(np.round(x / scale), -128, 127).astype(np.int8)
    v = get_variant("softmax", variant)
    params = v.make_params(scale, 197)
    want = float_softmax(q.astype(np.float64) * scale)
    return AccuracyResult(
        "softmax",
        variant,
        distribution,
        *_stats(
            v.reference(q, params),
            np.minimum(want, params.out_max * params.out_scale),
            params.out_scale,
        ),
    )


def gelu_accuracy(variant: str, distribution: str, seed: int = 0) -> AccuracyResult:
    """MLP hidden activations (197 x 3072, std 1.5), int8 in, int8 out at max-abs scales."""
    rng = np.random.default_rng(seed)
    x = sample(distribution, (197, 3072), rng, 1.5)
    scale = float(np.abs(x).max()) / 127
    q = np.clip(np.round(x / scale), -128, 127).astype(np.int8)
    xq = q.astype(np.float64) * scale
    v = get_variant("gelu", variant)
    # the GELU-less variant approximates ReLU, the function its models were distilled to
    want = np.maximum(xq, 0) if v.fused_relu else float_gelu(xq)
    out_scale = float(np.abs(want).max()) / 127
    params = v.make_params(scale, out_scale, in_bits=7)
    return AccuracyResult(
        "gelu", variant, distribution, *_stats(v.reference(q, params), want, out_scale)
    )


def layernorm_accuracy(variant: str, distribution: str, seed: int = 0) -> AccuracyResult:
    """Residual stream (197 x 768) in int32 with 20 magnitude bits; per-channel gamma/beta."""
    rng = np.random.default_rng(seed)
    x = sample(distribution, (197, 768), rng, 1.0) + rng.normal(0, 0.5, 768)
    scale = float(np.abs(x).max()) / 2**20
    q = np.round(x / scale).astype(np.int32)
    gamma = rng.uniform(0.5, 1.5, 768)
    beta = rng.normal(0, 0.2, 768)
    want = float_layernorm(q.astype(np.float64) * scale, gamma, beta)
    out_scale = float(np.abs(want).max()) / 127
    v = get_variant("layernorm", variant)
    params = v.make_params(768, gamma, beta, out_scale, in_bits=20)
    return AccuracyResult(
        "layernorm", variant, distribution, *_stats(v.reference(q, params), want, out_scale)
    )


MEASURES = {"softmax": softmax_accuracy, "gelu": gelu_accuracy, "layernorm": layernorm_accuracy}


#: Documented bounds (max, mean absolute error in output LSBs) on the cases above, per
#: (op, variant, distribution). The paper variants' large maxima are real: I-BERT's and I-ViT's
#: integer ``x0 = floor(-ln2/S)`` (or ``floor(-1/S)``) misstates the exponent base when the
#: int8 input scale is coarse (heavy tails widen the scale), and the edge variants are built
#: to avoid exactly that.
ACCURACY_BOUNDS: dict[tuple[str, str, str], tuple[float, float]] = {
    ("softmax", "edge", "gaussian"): (1.0, 0.25),
    ("softmax", "edge", "heavy_tailed"): (1.5, 0.2),
    ("softmax", "ibert", "gaussian"): (25.0, 0.4),
    ("softmax", "ibert", "heavy_tailed"): (200.0, 1.0),
    ("softmax", "shiftmax", "gaussian"): (10.0, 0.3),
    ("softmax", "shiftmax", "heavy_tailed"): (60.0, 0.3),
    ("gelu", "edge", "gaussian"): (1.0, 0.3),
    ("gelu", "edge", "heavy_tailed"): (1.0, 0.3),
    ("gelu", "lut", "gaussian"): (0.5, 0.25),
    ("gelu", "lut", "heavy_tailed"): (0.5, 0.25),
    ("gelu", "ibert", "gaussian"): (1.0, 0.3),
    ("gelu", "ibert", "heavy_tailed"): (4.5, 0.25),
    ("gelu", "relu", "gaussian"): (0.5, 0.15),
    ("gelu", "relu", "heavy_tailed"): (0.5, 0.15),
    ("gelu", "shiftgelu", "gaussian"): (2.5, 0.4),
    ("gelu", "shiftgelu", "heavy_tailed"): (90.0, 0.7),
    ("gelu", "sigmoid1702", "gaussian"): (1.5, 0.4),
    ("gelu", "sigmoid1702", "heavy_tailed"): (1.5, 0.4),
    ("layernorm", "edge", "gaussian"): (1.2, 0.4),
    ("layernorm", "edge", "heavy_tailed"): (1.2, 0.4),
    ("layernorm", "ilayernorm", "gaussian"): (0.8, 0.3),
    ("layernorm", "ilayernorm", "heavy_tailed"): (0.8, 0.3),
}

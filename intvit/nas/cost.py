"""Proxy costs of an arch, exact by counting: parameters and multiply-accumulates per image
(the constraints AutoFormer and MCUFormer search under), and the features the latency
predictor reads."""

from __future__ import annotations

import numpy as np

from intvit.quant.arch import VitArch


def _linear(n_in: int, n_out: int, rank: int | None) -> tuple[int, int]:
    """(parameters, MACs per token) of a linear with bias, dense or factorized."""
    if rank is None:
        return n_in * n_out + n_out, n_in * n_out
    return rank * (n_in + n_out) + n_out, rank * (n_in + n_out)


def params(arch: VitArch) -> int:
    return arch.param_count()


def macs(arch: VitArch) -> int:
    """Multiply-accumulates of one image (GEMMs and the two attention matmuls)."""
    d, t = arch.dim, arch.tokens
    total = arch.grid**2 * d * arch.in_chans * arch.patch_size**2
    for blk in arch.blocks:
        for layer in ("qkv", "proj", "fc1", "fc2"):
            total += t * _linear(*blk.linear_shape(layer, d), blk.rank(layer))[1]
        total += 2 * t * t * blk.attn_dim
    return total + d * arch.num_classes * (2 if arch.distilled else 1)


def gemm_count(arch: VitArch) -> int:
    """GEMM kernels of the compiled library (a low-rank linear counts two)."""
    per_block = [
        4 + 2 + sum(blk.rank(x) is not None for x in ("qkv", "proj", "fc1", "fc2"))
        for blk in arch.blocks
    ]
    return 2 + sum(per_block)


def features(arch: VitArch) -> np.ndarray:
    """What the latency predictor sees: the MACs by kind, the parameters, the depth and the
    kernel count (per-call overheads dominate small models), and the widths."""
    d, t = arch.dim, arch.tokens
    attn = sum(2 * t * t * b.attn_dim for b in arch.blocks)
    return np.array(
        [
            macs(arch),
            macs(arch) - attn,
            attn,
            params(arch),
            arch.depth,
            gemm_count(arch),
            d,
            sum(b.heads for b in arch.blocks),
            sum(b.attn_dim for b in arch.blocks),
            sum(b.mlp_hidden for b in arch.blocks),
        ],
        dtype=np.float64,
    )


#: What each entry of :func:`cost_terms` counts (one image).
COST_TERMS = (
    "call",  # 1: the VM's fixed cost per call
    "kernels",  # compiled kernels run (GEMMs, row kernels, the rest)
    "gemm_mmacs",  # GEMM multiply-accumulates, millions
    "attn_mmacs",  # the two attention matmuls' multiply-accumulates, millions
    "softmax_10k",  # softmax elements, ten-thousands
    "layernorm_10k",  # LayerNorm elements, ten-thousands
    "gelu_10k",  # GELU elements, ten-thousands
)


def cost_terms(arch: VitArch) -> np.ndarray:
    """The work of one image by kind (:data:`COST_TERMS`), each a count that a kernel's time
    grows with in proportion: latency is near a non-negative sum of them (one cost per call,
    per kernel launch, per MAC of each GEMM kind, per element of each row kernel), which the
    latency predictor fits first."""
    d, t = arch.dim, arch.tokens
    gemm = arch.grid**2 * d * arch.in_chans * arch.patch_size**2
    gemm += d * arch.num_classes * (2 if arch.distilled else 1)
    attn = softmax = layernorm = gelu = 0
    for blk in arch.blocks:
        for layer in ("qkv", "proj", "fc1", "fc2"):
            gemm += t * _linear(*blk.linear_shape(layer, d), blk.rank(layer))[1]
        attn += 2 * t * t * blk.attn_dim
        softmax += blk.heads * t * t
        layernorm += 2 * t * d
        gelu += t * blk.mlp_hidden
    layernorm += t * d  # the final norm
    kernels = gemm_count(arch) + 4 * arch.depth + 1
    return np.array(
        [1.0, kernels, gemm / 1e6, attn / 1e6, softmax / 1e4, layernorm / 1e4, gelu / 1e4],
        dtype=np.float64,
    )

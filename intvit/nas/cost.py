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
    d, c = arch.dim, arch.num_classes
    total = d * arch.in_chans * arch.patch_size**2 + d + arch.prefix_tokens * d + arch.tokens * d
    for blk in arch.blocks:
        total += 4 * d  # two LayerNorms
        for layer in ("qkv", "proj", "fc1", "fc2"):
            total += _linear(*blk.linear_shape(layer, d), blk.rank(layer))[0]
    heads = 2 if arch.distilled else 1
    return total + 2 * d + heads * (c * d + c)


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

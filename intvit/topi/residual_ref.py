"""NumPy reference of the residual add and the token/layout ops of the integer models."""

from __future__ import annotations

import numpy as np

from intvit.topi.requantize_params import RequantParams
from intvit.topi.requantize_ref import requantize_ref


def residual_add_ref(
    x: np.ndarray, acc: np.ndarray, skip: RequantParams, branch: RequantParams, lo: int, hi: int
) -> np.ndarray:
    """``clamp(rq_skip(x) + rq_branch(acc), lo, hi)`` as int32: both operands brought to the new
    residual scale by dyadic requantization (int32 outputs), summed exactly, saturated."""
    total = requantize_ref(x, skip).astype(np.int64) + requantize_ref(acc, branch)
    return np.clip(total, lo, hi).astype(np.int32)


def add_tokens_ref(x: np.ndarray, prefix: np.ndarray, pos: np.ndarray, lo: int, hi: int):
    """``clamp(concat(prefix, x) + pos)``: class/distillation tokens and position embeddings."""
    prefix = np.broadcast_to(prefix, (x.shape[0], *prefix.shape[1:]))
    total = np.concatenate([prefix, x], axis=1).astype(np.int64) + pos
    return np.clip(total, lo, hi).astype(np.int32)


def im2col_ref(q: np.ndarray, patch: int) -> np.ndarray:
    """``[B, C, H, W]`` -> ``[B, (H/p)*(W/p), C*p*p]`` in the conv weight's (C, kh, kw) order."""
    b, c, h, w = q.shape
    x = q.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.transpose(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def windows_ref(x: np.ndarray, grid: int, ws: int, shift: int) -> np.ndarray:
    """Swin: ``[B, grid*grid, C]`` rolled by ``-shift`` -> ``[B * windows, ws*ws, C]``."""
    b, _, c = x.shape
    x = x.reshape(b, grid, grid, c)
    if shift:
        x = np.roll(x, (-shift, -shift), axis=(1, 2))
    x = x.reshape(b, grid // ws, ws, grid // ws, ws, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def unwindows_ref(x: np.ndarray, grid: int, ws: int, shift: int) -> np.ndarray:
    """The inverse of :func:`windows_ref`."""
    c = x.shape[-1]
    nw = grid // ws
    x = x.reshape(-1, nw, nw, ws, ws, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, grid, grid, c)
    if shift:
        x = np.roll(x, (shift, shift), axis=(1, 2))
    return x.reshape(x.shape[0], grid * grid, c)


def split_heads_ref(qkv: np.ndarray, heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[B, N, 3*D]`` (q, k, v side by side, each ``heads`` blocks of ``D/heads``) -> ``q``,
    ``k`` as ``[B*heads, N, d]`` and ``v`` transposed, ``[B*heads, d, N]``."""
    b, n, three_d = qkv.shape
    d = three_d // 3 // heads
    x = qkv.reshape(b, n, 3, heads, d).transpose(2, 0, 3, 1, 4).reshape(3, b * heads, n, d)
    return x[0].copy(), x[1].copy(), x[2].transpose(0, 2, 1).copy()


def token_sum_ref(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int32).sum(axis=1, dtype=np.int32)


def window_scores_ref(acc, bias, mask, nw: int, heads: int, rq: RequantParams, masked: int):
    """Swin scores; see :func:`intvit.topi.residual.window_scores`."""
    n = acc.shape[-1]
    total = acc.reshape(-1, nw, heads, n, n).astype(np.int64) + bias
    y = requantize_ref(total, rq).astype(np.int32)
    if mask is not None:
        y = np.where(mask.astype(bool)[None, :, None], np.int32(masked), y)
    return y.reshape(-1, n, n)

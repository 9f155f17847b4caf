"""TE computes of the integer GEMMs: int8/uint8 x int8 -> int32 with optional int32 bias."""

from __future__ import annotations

from tvm import te

from intvit.topi.contract import check_dtype

_ACT_DTYPES = ("int8", "uint8")


def dense(x: te.Tensor, w: te.Tensor, bias: te.Tensor | None = None, name: str = "dense"):
    """``out[..., n] = sum_k x[..., k] * w[n, k] + bias[n]`` in int32.

    ``x``: int8/uint8 ``[..., K]``; ``w``: int8 ``[N, K]``; ``bias``: int32 ``[N]`` at scale
    ``S_x * S_w[n]``. K is bounded by exactness of int32 accumulation (K < 65793).
    """
    check_dtype("x", x.dtype, _ACT_DTYPES)
    check_dtype("w", w.dtype, ("int8",))
    k_dim = int(x.shape[-1])
    if int(w.shape[1]) != k_dim:
        raise ValueError(f"w has K={int(w.shape[1])} but x has K={k_dim}")
    if k_dim >= 65793:
        raise ValueError(f"K={k_dim} is too large for exact int32 accumulation (< 65793)")
    k = te.reduce_axis((0, k_dim), name="k")
    out_shape = (*x.shape[:-1], w.shape[0])

    def body(*idx):
        return te.sum(x[(*idx[:-1], k)].astype("int32") * w[idx[-1], k].astype("int32"), axis=k)

    acc = te.compute(out_shape, body, name=f"{name}_acc")
    if bias is None:
        return acc
    check_dtype("bias", bias.dtype, ("int32",))
    return te.compute(out_shape, lambda *i: acc(*i) + bias[i[-1]], name=f"{name}_bias")


def batch_matmul(a: te.Tensor, b: te.Tensor, name: str = "batch_matmul") -> te.Tensor:
    """``out[b, i, j] = sum_k a[b, i, k] * b[b, j, k]`` in int32 (int8/uint8 x int8)."""
    check_dtype("a", a.dtype, _ACT_DTYPES)
    check_dtype("b", b.dtype, _ACT_DTYPES)
    if len(a.shape) != 3 or len(b.shape) != 3:
        raise ValueError("batch_matmul takes rank-3 operands [B, M, K] and [B, N, K]")
    k = te.reduce_axis((0, a.shape[2]), name="k")
    return te.compute(
        (a.shape[0], a.shape[1], b.shape[1]),
        lambda bb, i, j: te.sum(a[bb, i, k].astype("int32") * b[bb, j, k].astype("int32"), axis=k),
        name=name,
    )

"""TE helpers for kernels that reduce over the last axis (softmax, LayerNorm, I-ViT GELU)."""

from __future__ import annotations

from tvm import te

from intvit.topi.contract import check_axis, check_dtype, check_rank

INT_INPUTS = ("int8", "uint8", "int16", "int32")


def check_rowwise_input(q: te.Tensor, name: str = "q", axis: int = -1) -> None:
    check_dtype(name, q.dtype, INT_INPUTS)
    shape = tuple(int(d) for d in q.shape)
    check_rank(name, shape, 1, 4)
    check_axis("axis", axis, len(shape))


def row_reduce(x: te.Tensor, kind: str, dtype: str, name: str, fn=None) -> te.Tensor:
    """``max`` or ``sum`` over the last axis of ``fn(x[...], index)`` (``x`` cast to
    ``dtype``; ``index`` the element's full index, so ``fn`` can compute the reduced value
    from other tensors too, with no buffer between them)."""
    *outer, length = x.shape
    k = te.reduce_axis((0, length), name=f"{name}_k")
    reducer = te.max if kind == "max" else te.sum

    def body(*i):
        value = x[(*i, k)].astype(dtype)
        return reducer(fn(value, (*i, k)) if fn is not None else value, axis=k)

    return te.compute(tuple(outer), body, name=name)

"""Emit a TE kernel into a Relax function as ``call_tir`` on a PrimFunc with int32 indices.

Why not ``BlockBuilder.emit_te``: it builds the PrimFunc with ``index_dtype_override="int64"``,
and TVM's index normalizer then treats both sides of every comparison inside a ``Select``
condition as index expressions and widens them to int64, data included. An integer kernel
branches on its data (a GELU's sign test, a clamp): DeiT-small's edge GELU (197 x 1536 int8)
computed four int64 multiplies per element and took 0.120 ms on 2 Zen 3 cores instead of
0.049 ms with int32 indices. Shapes here are static and far below 2**31 elements, so int32
indices lose nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from tvm import relax, te

from intvit.topi.kinds import KERNEL_ATTR, KINDS


def _tensor_type(expr: relax.Expr) -> tuple[tuple[int, ...], str]:
    ty = expr.ty
    return tuple(int(s) for s in ty.shape.values), str(ty.dtype)


def emit_te(
    bb: relax.BlockBuilder,
    compute: Callable[..., te.Tensor | list[te.Tensor] | tuple[te.Tensor, ...]],
    *args: relax.Expr,
    primfunc_name_hint: str,
    kind: str,
    attrs: dict[str, str] | None = None,
) -> relax.Var:
    """``bb.emit_te(compute, *args, primfunc_name_hint=...)`` with int32 indices: ``compute``
    gets one placeholder per tensor argument (statically shaped) and returns the output
    tensor (or several: the call then returns a tuple). ``kind`` (one of
    :data:`intvit.topi.kinds.KINDS`) goes on the PrimFunc as its ``intvit.kernel`` attribute,
    and ``attrs`` as further attributes."""
    if kind not in KINDS:
        raise ValueError(f"kernel kind {kind!r} is not one of {', '.join(KINDS)}")
    placeholders = []
    for i, arg in enumerate(args):
        shape, dtype = _tensor_type(arg)
        placeholders.append(te.placeholder(shape, dtype, name=f"{primfunc_name_hint}_in{i}"))
    result = compute(*placeholders)
    outputs = list(result) if isinstance(result, list | tuple) else [result]
    func = te.create_prim_func([*placeholders, *outputs]).without_attr("global_symbol")
    func = func.with_attr(KERNEL_ATTR, kind)
    for key, value in (attrs or {}).items():
        func = func.with_attr(key, value)
    gv = bb.add_func(func, primfunc_name_hint)
    types = [relax.TensorType([int(s) for s in t.shape], str(t.dtype)) for t in outputs]
    out_type = types if isinstance(result, list | tuple) else types[0]
    return bb.emit(relax.call_tir(gv, list(args), out_type))

"""What a compiled library needs in memory for one inference at its batch: the activation
storage the Relax VM allocates after TVM's static memory planning, the largest kernel's own
scratch buffers, and the constant (weight) bytes; and an independent count of the live
intermediate tensors to check the plan against.

- ``activation_bytes``: the sum of every ``vm.alloc_storage`` of the lowered ``main`` (the
  storages that ``StaticPlanBlockMemory`` shares between tensors whose lifetimes do not
  overlap, the output's included). This is what the VM allocates per inference.
- ``kernel_scratch_bytes``: the largest, over the kernels ``main`` calls, of the intermediate
  buffers a kernel allocates itself (packed activations, accumulators, widened weight panels).
  Counted from each scheduled PrimFunc's buffers at the sizes TIR's buffer compaction gives
  them, all as if live at once, so it is an upper bound; kernels run one after another, so
  the peak activation memory is at most ``activation_bytes + kernel_scratch_bytes``.
- ``weight_bytes``: the bytes of every constant ``main`` passes to its kernels (packed int8
  weights, int32 biases, requantization and LayerNorm tables).
- :func:`peak_live_bytes`: the largest total of intermediate tensors alive at once along the
  unplanned module's binding order (a tensor lives from its binding to its last use; a
  reshape is a view of its input). Static planning cannot go below it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import tvm
from tvm import relax, tirx

_ALLOC_STORAGE = tvm.ir.Op.get("relax.vm.alloc_storage")
_RESHAPE = tvm.ir.Op.get("relax.reshape")


@dataclass(frozen=True)
class MemoryReport:
    """Bytes for one inference of a compiled library (see the module docstring)."""

    activation_bytes: int
    kernel_scratch_bytes: int
    weight_bytes: int
    library_bytes: int | None = None

    @property
    def peak_bytes(self) -> int:
        """Activations plus the largest kernel scratch: an upper bound of the peak."""
        return self.activation_bytes + self.kernel_scratch_bytes

    def with_library(self, library_bytes: int) -> MemoryReport:
        return MemoryReport(
            self.activation_bytes, self.kernel_scratch_bytes, self.weight_bytes, library_bytes
        )

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MemoryReport:
        return cls(
            int(d["activation_bytes"]),
            int(d["kernel_scratch_bytes"]),
            int(d["weight_bytes"]),
            None if d.get("library_bytes") is None else int(d["library_bytes"]),
        )

    def summary(self) -> str:
        lib = "" if self.library_bytes is None else f", library {kib(self.library_bytes)}"
        return (
            f"memory: activations {kib(self.activation_bytes)} (VM plan) + kernel scratch "
            f"<= {kib(self.kernel_scratch_bytes)}, weights {kib(self.weight_bytes)}{lib}"
        )


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def _bindings(func: relax.Function):
    for block in func.body.blocks:
        yield from block.bindings


def _tensor_bytes(ty) -> int:
    """Bytes of a tensor (or of every tensor of a tuple) type with a static shape."""
    if isinstance(ty, relax.TupleType):
        fields = ty.fields
        return sum(_tensor_bytes(f) for f in fields)
    shape = getattr(ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return 0
    dtype = tvm.runtime.DataType(str(ty.dtype))
    return int(np.prod([int(s) for s in shape.values])) * ((dtype.bits * dtype.lanes + 7) // 8)


def planned_activation_bytes(lowered: tvm.IRModule) -> int:
    """The storage the VM allocates in the lowered ``main`` (after static memory planning)."""
    total = 0
    for binding in _bindings(lowered["main"]):
        value = binding.value
        if isinstance(value, relax.Call) and value.op.same_as(_ALLOC_STORAGE):
            total += int(value.args[0].values[0])
    return total


def _walk_tir(stmt, visit) -> None:
    visit(stmt)
    for attr in ("block", "init", "body", "then_case", "else_case"):
        child = getattr(stmt, attr, None)
        if isinstance(child, tirx.Stmt):
            _walk_tir(child, visit)
    for child in getattr(stmt, "seq", ()):
        _walk_tir(child, visit)


def _buffer_bytes(buf) -> int:
    dtype = tvm.runtime.DataType(str(buf.dtype))
    return int(np.prod([int(s) for s in buf.shape])) * ((dtype.bits * dtype.lanes + 7) // 8)


def kernel_scratch_bytes(func: tirx.PrimFunc) -> int:
    """Bytes of the buffers ``func`` allocates itself, each at the size TIR's buffer
    compaction gives it (the region its accesses touch where it is allocated: a register
    tile's accumulators are one tile, not the whole output), all counted as live at once."""
    from tvm.s_tir import transform as s_tir_transform

    passes = (
        s_tir_transform.LowerInitBlock(),
        s_tir_transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir_transform.ConvertBlocksToOpaque(),
        s_tir_transform.CompactBufferAllocation(),
    )  # as TIR's lowering runs them
    mod = tvm.IRModule({"main": func})
    try:
        mod = tvm.transform.Sequential(list(passes))(mod)
    except tvm.error.InternalError:  # a function TIR cannot compact: its declared sizes
        mod = tvm.IRModule({"main": func})
    total = 0

    def visit(node) -> None:
        nonlocal total
        for buf in getattr(node, "alloc_buffers", ()):
            total += _buffer_bytes(buf)

    _walk_tir(mod["main"].body, visit)
    return total


def constant_bytes(func: relax.Function) -> int:
    """Bytes of the distinct constants ``func`` uses."""
    seen: dict[int, int] = {}

    def visit(expr) -> None:
        value = getattr(expr, "value", None)
        if isinstance(expr, tvm.ir.expr.GenericConst) and isinstance(value, tvm.runtime.Tensor):
            dtype = tvm.runtime.DataType(str(value.dtype))
            seen[hash(expr)] = int(np.prod(value.shape)) * ((dtype.bits + 7) // 8)

    relax.analysis.post_order_visit(func.body, visit)
    return sum(seen.values())


def memory_report(mod: tvm.IRModule, lowered: tvm.IRModule) -> MemoryReport:
    """The memory report of ``mod`` (the unplanned module) lowered to ``lowered``."""
    called = set()
    for binding in _bindings(lowered["main"]):
        value = binding.value
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
            called.add(value.op.name_hint)
    scratch = [
        kernel_scratch_bytes(f)
        for gv, f in lowered.functions_items()
        if isinstance(f, tirx.PrimFunc) and gv.name_hint in called
    ]
    return MemoryReport(
        planned_activation_bytes(lowered), max(scratch, default=0), constant_bytes(mod["main"])
    )


def peak_live_bytes(mod: tvm.IRModule) -> int:
    """The largest total of intermediate tensors alive at once in ``mod``'s ``main`` (before
    memory planning): each binding's output lives until its last use (the output until the
    end); reshapes and tuple items are views of what they read."""
    func = mod["main"]
    bindings = list(_bindings(func))
    owner: dict[relax.Var, relax.Var] = {}  # a view -> the tensor that holds its bytes
    size: dict[relax.Var, int] = {}
    last: dict[relax.Var, int] = {}

    def root(v):
        while v in owner:
            v = owner[v]
        return v

    def uses(expr) -> list[relax.Var]:
        found = []

        def visit(e) -> None:
            if isinstance(e, relax.Var):
                found.append(e)

        relax.analysis.post_order_visit(expr, visit)
        return found

    for i, b in enumerate(bindings):
        value = b.value
        if isinstance(value, relax.Call) and value.op.same_as(_RESHAPE):
            src = value.args[0]
        elif isinstance(value, relax.TupleGetItem):
            src = value.tuple_value
        else:
            src = value
        if isinstance(src, relax.Var):  # a view of src
            owner[b.var] = src
        else:
            size[b.var] = _tensor_bytes(b.var.ty)
        for v in uses(value):
            last[root(v)] = i
    output = func.body.body
    end = len(bindings)
    for v in uses(output):
        last[root(v)] = end
    events: list[tuple[int, int]] = []
    for i, b in enumerate(bindings):
        if size.get(b.var):
            events.append((i, size[b.var]))
            events.append((last.get(b.var, i) + 1, -size[b.var]))
    live = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        live += delta
        peak = max(peak, live)
    return peak

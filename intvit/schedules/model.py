"""Apply intvit's schedules to the kernels of a model's Relax module before lowering: packed
GEMMs (and fused low-rank linears) get the tensorized register-blocked schedule with its
default knobs, row kernels (softmax, GELU, LayerNorm) the row schedule, unless a tuning
database has a schedule for them. Everything else keeps TVM's default lowering (or a tuning
database's)."""

from __future__ import annotations

from dataclasses import replace

import tvm
from tvm import tirx

from intvit.schedules.gemm import schedule_packed_gemm
from intvit.schedules.intrinsics import kernel_of_func
from intvit.schedules.low_rank import schedule_low_rank_gemm
from intvit.schedules.rowwise import schedule_rowwise
from intvit.topi.gemm_kernel import GemmKernel
from intvit.topi.kinds import (
    FIRST_GEMM_KERNEL_ATTR,
    FIRST_GEMM_VECTORS_ATTR,
    LOW_RANK_GEMM,
    PACKED_GEMM,
    ROW_CHUNKS_ATTR,
    ROW_KINDS,
    kernel_kind,
)


def schedule_gemms(
    mod: tvm.IRModule,
    kernels: tuple[GemmKernel, ...],
    cores: int,
    leave_packed: bool = False,
) -> tvm.IRModule:
    """A copy of ``mod`` with the packed GEMMs and fused low-rank linears not scheduled yet
    (by a tuning database) scheduled with their default knobs, each for the one of
    ``kernels`` it was packed for. ``leave_packed``: they stay unscheduled, for a tuning job
    to search."""
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or not kernels:
            continue
        if func.attrs is not None and func.attrs.get("tirx.is_scheduled", False):
            continue
        kind = kernel_kind(func)
        if leave_packed and kind in (PACKED_GEMM, LOW_RANK_GEMM):
            continue
        if kind == PACKED_GEMM:
            kernel = kernel_of_func(func, kernels)
            out[gv] = schedule_packed_gemm(func, kernel, parallel=cores > 1)
        elif kind == LOW_RANK_GEMM:
            first, second, chunks = low_rank_kernels(func, kernels)
            out[gv] = schedule_low_rank_gemm(func, first, second, chunks, parallel=cores > 1)
    return out


def low_rank_kernels(
    func: tirx.PrimFunc, kernels: tuple[GemmKernel, ...]
) -> tuple[GemmKernel, GemmKernel, int]:
    """A fused low-rank linear's first GEMM's kernel (with the tile it was packed for), its
    second GEMM's, and its row chunks: what its function's attributes record."""
    first = replace(
        kernel_of_func(func, kernels, FIRST_GEMM_KERNEL_ATTR),
        n_vectors=int(func.attrs[FIRST_GEMM_VECTORS_ATTR]),
    )
    return first, kernel_of_func(func, kernels), int(func.attrs[ROW_CHUNKS_ATTR])


def schedule_rows(mod: tvm.IRModule, cores: int) -> tvm.IRModule:
    """``mod`` with the row schedule (parallel over rows) on every row kernel not scheduled
    yet (by intvit or a tuning database). One core: TVM's default lowering, which measured
    no slower (DeiT-tiny 41.9 vs 42.5 ms)."""
    if cores < 2:
        return mod
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in mod.functions_items():
        if (
            isinstance(func, tirx.PrimFunc)
            and kernel_kind(func) in ROW_KINDS
            and not func.attrs.get("tirx.is_scheduled", False)
        ):
            out[gv] = schedule_rowwise(func).with_attr("tirx.is_scheduled", True)
    return out

"""Apply intvit's schedules to the kernels of a model's Relax module before lowering: packed
GEMMs get the tensorized register-blocked schedule, row kernels (softmax, GELU, LayerNorm) the
row schedule. Everything else keeps TVM's default lowering (or a tuning database's)."""

from __future__ import annotations

import tvm
from tvm import tirx

from intvit.schedules.gemm import PACKED_FUNC, schedule_packed_gemm
from intvit.schedules.intrinsics import GemmKernel
from intvit.schedules.rowwise import schedule_rowwise

ROW_KERNELS = ("softmax", "gelu", "layernorm")
#: Off: no gain measured with TVM's one runtime thread here (DeiT-tiny 41.9 vs 42.5 ms), and
#: unscheduled row kernels stay in MetaSchedule's tuning space (it skips scheduled ones). The
#: kernel benchmarks use the row schedule directly. (A 180 s build once blamed on it was the
#: import of TVM's tensor intrinsics, see intrinsics.py.)
ROW_SCHEDULES = False


def schedule_module(mod: tvm.IRModule, kernel: GemmKernel | None, cores: int) -> tvm.IRModule:
    """A copy of ``mod`` with intvit's schedules applied to the kernels they fit."""
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        name = gv.name_hint
        if kernel is not None and PACKED_FUNC in name:
            out[gv] = schedule_packed_gemm(func, kernel, parallel=cores > 1)
        elif name.startswith(ROW_KERNELS) and cores > 1 and ROW_SCHEDULES:
            out[gv] = schedule_rowwise(func).with_attr("tirx.is_scheduled", True)
    return out

"""Compile a TE kernel for a target, with or without the default schedule."""

from __future__ import annotations

from collections.abc import Sequence

import tvm
from tvm import te

from intvit.schedules.rowwise import schedule_rowwise


def build_te(
    args: Sequence[te.Tensor],
    target: tvm.target.Target | dict,
    schedule: bool = True,
    vectorize: bool = False,
):
    """Build ``args`` (inputs then outputs) into an executable whose ``main`` takes them, for
    any target (``export_library`` it for another machine)."""
    func = te.create_prim_func(list(args))
    if schedule:
        func = schedule_rowwise(func, vectorize=vectorize)
    if isinstance(target, dict):
        target = tvm.target.Target(target)
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


def compile_te(
    args: Sequence[te.Tensor],
    target: tvm.target.Target | dict,
    schedule: bool = True,
    vectorize: bool = False,
):
    """Build ``args`` (inputs then outputs) into a loaded module whose ``main`` takes them."""
    return build_te(args, target, schedule, vectorize).jit()

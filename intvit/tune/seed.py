"""intvit's own row schedule as a measured record in the tuning database.

A tuning job gives every row kernel (softmax, GELU, LayerNorm, requantize) a record with
intvit's hand schedule (:func:`intvit.schedules.rowwise.rowwise_schedule`, replayable from its
trace) before MetaSchedule searches, measured by the same builder and runner as its
candidates. The database's best is then never slower than the untuned build: with a small
budget per kernel MetaSchedule's candidates were (DeiT-tiny, 300 trials over 191 kernels:
27.5 ms untuned, 29.6 ms tuned), and its evolutionary search starts from the hand schedule
(it samples its first population from the database's measured records).
"""

from __future__ import annotations

from pathlib import Path

import tvm

from intvit.schedules.rowwise import rowwise_schedule
from intvit.topi.kinds import ROW_KINDS, kernel_kind


def seed_row_schedules(
    mod: tvm.IRModule, target, db: Path, op_names, builder, runner, limit: int, log=print
) -> int:
    """Commit a measured hand-schedule record for each row kernel of ``mod`` (Relax, legalized)
    among ``op_names`` that the database does not know yet, at most ``limit``; how many."""
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.JSONDatabase(work_dir=str(db))
    todo = []
    for task in ms.relax_integration.extract_tasks(mod, target):
        name = task.task_name
        kernel = task.dispatched[0]
        if kernel_kind(kernel["main"]) not in ROW_KINDS or not any(op in name for op in op_names):
            continue
        if not database.has_workload(kernel):
            todo.append((name, kernel))
    todo = todo[: max(limit, 0)]
    if not todo:
        return 0
    schedules = [rowwise_schedule(kernel["main"]) for _, kernel in todo]
    built = builder.build([ms.builder.BuilderInput(s.mod, target) for s in schedules])
    inputs, measured = [], []
    for (name, kernel), sch, result in zip(todo, schedules, built, strict=True):
        if result.error_msg:
            log(f"hand schedule of {name} failed to build: {result.error_msg.splitlines()[-1]}")
            continue
        args = ms.arg_info.ArgInfo.from_prim_func(kernel["main"])
        inputs.append(ms.runner.RunnerInput(result.artifact_path, "cpu", args))  # CPU targets
        measured.append((name, kernel, sch, args))
    seeded = 0
    for (name, kernel, sch, args), future in zip(measured, runner.run(inputs), strict=True):
        result = future.result()
        if result.error_msg:
            log(f"hand schedule of {name} failed to run: {result.error_msg.splitlines()[-1]}")
            continue
        workload = database.commit_workload(kernel)
        record = ms.database.TuningRecord(sch.trace, workload, result.run_secs, target, args)
        database.commit_tuning_record(record)
        seeded += 1
    return seeded

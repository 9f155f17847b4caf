"""intvit's own schedules as measured records in the tuning database.

A tuning job gives every packed GEMM and fused low-rank linear a record of its default knobs
(:func:`intvit.schedules.gemm.default_gemm_schedule`,
:func:`intvit.schedules.low_rank.low_rank_schedule`) and, on more than one core, every row
kernel (softmax, GELU, LayerNorm, requantize) one of intvit's row schedule
(:func:`intvit.schedules.rowwise.rowwise_schedule`), before MetaSchedule searches; both are
replayable from their traces and measured by the same builder and runner as its candidates.
The database's best is then never slower than the untuned build: with a small budget per
kernel MetaSchedule's candidates were (DeiT-tiny, 300 trials over 191 kernels: 27.5 ms
untuned, 29.6 ms tuned), and its evolutionary search starts from the hand schedule (it
samples its first population from the database's measured records).
"""

from __future__ import annotations

from pathlib import Path

import tvm

from intvit.deploy.targets import TargetPreset
from intvit.schedules.database import extract_tasks, open_database


def seed_hand_schedules(
    mod: tvm.IRModule,
    preset: TargetPreset,
    db: Path,
    op_names,
    builder,
    runner,
    limit: int,
    rows: bool = True,
    log=print,
) -> int:
    """Commit a measured record of intvit's own schedule (:func:`intvit.tune.spaces.
    hand_schedule`; row kernels only with ``rows``) for each kernel of ``mod`` (Relax,
    legalized for ``preset``'s target) among ``op_names`` that the database does not know
    yet, at most ``limit``; how many."""
    from tvm.s_tir import meta_schedule as ms

    from intvit.tune.spaces import hand_schedule

    target = preset.tvm_target()
    database = open_database(db)
    todo = []
    for task in extract_tasks(mod, target):
        name = task.task_name
        kernel = task.dispatched[0]
        if not any(op in name for op in op_names) or database.has_workload(kernel):
            continue
        sch = hand_schedule(kernel["main"], preset.target, preset.cores, rows)
        if sch is not None:
            todo.append((name, kernel, sch))
    todo = todo[: max(limit, 0)]
    if not todo:
        return 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, _, sch in todo])
    inputs, measured = [], []
    for (name, kernel, sch), result in zip(todo, built, strict=True):
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

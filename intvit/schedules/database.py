"""A MetaSchedule tuning database on disk (two JSON-lines files): counting, checking and
repairing its records, and applying it to a module. Below both the tuner, which writes it,
and the compiler, which applies it."""

from __future__ import annotations

import json
from pathlib import Path

import tvm

RECORDS = "database_tuning_record.json"
WORKLOADS = "database_workload.json"

#: How a kernel finds its records: by its anchor block (the GEMM or reduction at its heart),
#: not by the whole function. The same GEMM in each of a model's blocks differs only in its
#: requantization constants, so it is one task, tuned once with the whole budget for that
#: shape, and its trace is replayed on each block's own function (DeiT-tiny: 18 tasks, not
#: 74; 7 GEMM tasks, not 52).
MODULE_EQUALITY = "anchor-block"


def open_database(db: str | Path):
    """MetaSchedule's JSON database at ``db`` (created if missing), matching kernels by
    :data:`MODULE_EQUALITY`."""
    from tvm.s_tir import meta_schedule as ms

    return ms.database.JSONDatabase(work_dir=str(db), module_equality=MODULE_EQUALITY)


def extract_tasks(mod: tvm.IRModule, target: tvm.target.Target) -> list:
    """MetaSchedule's tuning tasks of the Relax module ``mod``, one per kernel as the
    database matches them (:data:`MODULE_EQUALITY`)."""
    from tvm.s_tir import meta_schedule as ms

    return list(ms.relax_integration.extract_tasks(mod, target, module_equality=MODULE_EQUALITY))


def count_records(db: str | Path) -> int:
    path = Path(db) / RECORDS
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def drop_torn_tail(path: Path, log=print) -> bool:
    """Remove a last line a killed job left half-written (no newline, not JSON), with a
    warning; True if one was dropped. Complete lines are never touched."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    head, _, tail = data.rpartition(b"\n")
    try:
        json.loads(tail)
        path.write_bytes(data + b"\n")  # a complete record that only lacks its newline
        return False
    except ValueError:
        path.write_bytes(head + b"\n" if head else b"")
        log(f"warning: dropped a half-written last line ({len(tail)} bytes) of {path}")
        return True


def _workload_problem(entry: object) -> str | None:
    """Why a workload line is not MetaSchedule's ``[structural hash, module JSON]``."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
        return "is not [structural hash, module]"
    if not isinstance(entry[1], str | dict):
        return "holds no module"
    return None


def _record_problem(entry: object, workloads: int) -> str | None:
    """Why a record line is not MetaSchedule's ``[workload index, [trace, run seconds,
    target, argument info]]``."""
    if not (isinstance(entry, list) and len(entry) == 2):
        return "is not [workload index, record]"
    index, body = entry
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < workloads:
        return f"names workload {index!r}; the database has {workloads}"
    if not (isinstance(body, list) and len(body) == 4):
        return "is not [trace, run seconds, target, argument info]"
    trace, run_secs, target, _ = body
    if not isinstance(trace, list):
        return f"has a trace that is {type(trace).__name__}, not a list"
    numbers = isinstance(run_secs, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in run_secs
    )
    if run_secs is not None and not numbers:
        return f"has run seconds {run_secs!r}, not a list of numbers"
    if not isinstance(target, dict | str):
        return f"has a target that is {type(target).__name__}"
    return None


def check_database(db: str | Path) -> Path:
    """``db`` as a usable database folder; ValueError naming a missing file, or the file and
    line of a corrupt or malformed entry (before TVM reads it and fails with a type error)."""
    db = Path(db)
    counts = {}
    for name in (WORKLOADS, RECORDS):
        path = db / name
        if not path.is_file():
            raise ValueError(f"tuning database {str(db)!r} has no {name}")
        counts[name] = 0
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{str(path)!r} line {n} is corrupt") from None
            if name == WORKLOADS:
                problem = _workload_problem(entry)
            else:
                problem = _record_problem(entry, counts[WORKLOADS])
            if problem:
                raise ValueError(f"{str(path)!r} line {n} {problem}")
            counts[name] += 1
    return db


def apply_database(
    mod: tvm.IRModule,
    db: str | Path,
    target: tvm.target.Target,
    not_replayed: list[str] | None = None,
) -> tvm.IRModule:
    """``mod`` with the best tuned schedule of every kernel the database knows (for
    ``target``, the one it was tuned for); kernels already scheduled, or without a record, are
    left as they are.

    The record's trace is replayed on the kernel's own function, not on the function it was
    tuned on: under :data:`MODULE_EQUALITY` the two share their anchor block but not their
    constants or block names (TVM's ``MetaScheduleApplyDatabase`` would compile in the tuned
    function's constants). A kernel whose trace does not replay (its blocks differ from the
    tuned function's) is left unscheduled and its name appended to ``not_replayed``."""
    import intvit.schedules.intrinsics  # noqa: F401  (the traces' tensor intrinsics)

    database = open_database(check_database(db))
    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    out = mod.clone()
    for gv, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
            continue
        query = normalize(func)
        record = database.query_tuning_record(query, target, gv.name_hint)
        if record is None:
            continue
        scheduled = replay_record(record, query)
        if scheduled is None:
            if not_replayed is not None:
                not_replayed.append(gv.name_hint)
            continue
        scheduled = scheduled.without_attr("global_symbol")  # normalize_mod's
        for key, value in func.attrs.items():
            scheduled = scheduled.with_attr(key, value)
        out.update_func(gv, scheduled.with_attr("tirx.is_scheduled", True))
    return out


def block_names(mod: tvm.IRModule) -> list[str]:
    """The names of the blocks of ``mod``'s ``main``, parents before children, in program
    order."""
    from tvm import s_tir

    sch = s_tir.Schedule(mod)
    names: list[str] = []

    def walk(block) -> None:
        for child in sch.get_child_blocks(block):
            names.append(sch.get(child).name_hint)
            walk(child)

    walk(sch.get_sblock("root"))
    return names


def replay_record(record, query: tvm.IRModule):
    """The record's trace replayed on ``query`` (a normalized one-kernel module with the same
    anchor block as the record's workload), as a scheduled PrimFunc; None where it does not
    replay.

    Blocks are matched by position: the same computation built for another layer has the
    same blocks in the same order under other names (``b0_fc1_packed_bias``,
    ``b5_fc1_packed_bias``), so each block the trace names is renamed to the query's block at
    its place before the trace is replayed, with the tuned decisions."""
    from tvm import s_tir

    tuned, own = block_names(record.workload.mod), block_names(query)
    if len(tuned) != len(own) or len(set(tuned)) != len(tuned):
        return None
    rename = dict(zip(tuned, own, strict=True))
    insts, decisions = record.trace.as_json()
    for inst in insts:
        if inst[0] == "GetSBlock" and inst[2][0] in rename:
            inst[2][0] = rename[inst[2][0]]
    sch = s_tir.Schedule(query)
    try:
        s_tir.schedule.Trace.apply_json_to_schedule([insts, decisions], sch)
    except (s_tir.schedule.ScheduleError, RuntimeError, ValueError):
        return None
    return sch.mod["main"]

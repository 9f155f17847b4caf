"""A MetaSchedule tuning database on disk (two JSON-lines files): counting, checking and
repairing its records, and applying it to a module. Below both the tuner, which writes it,
and the compiler, which applies it."""

from __future__ import annotations

import json
from pathlib import Path

import tvm
from tvm import relax

RECORDS = "database_tuning_record.json"
WORKLOADS = "database_workload.json"


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


def apply_database(mod: tvm.IRModule, db: str | Path, target: tvm.target.Target) -> tvm.IRModule:
    """``mod`` with the best tuned schedule of every kernel the database knows (for
    ``target``, the one it was tuned for)."""
    db = check_database(db)
    with target:
        return relax.transform.MetaScheduleApplyDatabase(str(db))(mod)

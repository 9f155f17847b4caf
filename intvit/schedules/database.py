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


def check_database(db: str | Path) -> Path:
    """``db`` as a usable database folder; ValueError naming a missing or corrupt file."""
    db = Path(db)
    for name in (WORKLOADS, RECORDS):
        path = db / name
        if not path.is_file():
            raise ValueError(f"tuning database {str(db)!r} has no {name}")
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{str(path)!r} line {n} is corrupt") from None
    return db


def apply_database(mod: tvm.IRModule, db: str | Path, target: tvm.target.Target) -> tvm.IRModule:
    """``mod`` with the best tuned schedule of every kernel the database knows (for
    ``target``, the one it was tuned for)."""
    db = check_database(db)
    with target:
        return relax.transform.MetaScheduleApplyDatabase(str(db))(mod)

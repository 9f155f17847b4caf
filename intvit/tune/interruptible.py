"""A tuning job that Ctrl-C ends at once: the job runs in a child process of its own process
group, and an interrupt kills that group (the child and MetaSchedule's builder and runner
workers) and keeps the database.

MetaSchedule's search loop is C++: a KeyboardInterrupt raised inside it is swallowed there or
crashes it, so an in-process job can only stop between batches (minutes on a slow device).
Every record MetaSchedule commits is a complete line of the JSON database when it is
written; a kill can leave at most a half-written last line, which is dropped here (and would
be by the next run). The batch being measured when the interrupt came is lost; everything
recorded before it is kept.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from pathlib import Path

from intvit.quant.int_model import IntModel
from intvit.schedules.database import RECORDS, WORKLOADS, count_records, drop_torn_tail
from intvit.tune.job import TuneConfig, TuneSummary, tune


def _die_with(parent: int) -> None:
    """End this process when ``parent`` dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``):
    a killed ``intvit tune`` leaves no job tuning on. MetaSchedule's workers then exit after
    their current candidate, when their pipe to this process closes."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)


def _child(model: IntModel, cfg: TuneConfig, conn, parent: int) -> None:
    """The job, in its own process group; sends ``("ok", summary)`` or ``(kind, message)``."""
    _die_with(parent)
    os.setsid()  # its own group: the parent's kill reaches MetaSchedule's workers too
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt does
    try:
        conn.send(("ok", tune(model, cfg)))
    except ValueError as err:
        conn.send(("value", str(err)))
    except Exception as err:  # reported by the parent as the job's failure
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


def tune_interruptibly(model: IntModel, cfg: TuneConfig, log=print) -> TuneSummary:
    """:func:`~intvit.tune.job.tune` in a child process. KeyboardInterrupt (Ctrl-C, or the
    SIGTERM/SIGHUP the command line turns into one) kills the job within a second and is
    re-raised after the database is left whole; a ValueError of the job is re-raised as
    one, any other failure as a RuntimeError."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(model, cfg, send, os.getpid()), name="intvit-tune")
    child.start()
    send.close()
    try:
        while not receive.poll(0.2):
            if not child.is_alive():
                break
        result = receive.recv() if receive.poll() else ("error", "the tuning job died")
    except KeyboardInterrupt:
        _kill_group(child)
        kept = _leave_whole(Path(cfg.db), log)
        log(f"interrupted: the batch being measured is dropped; {kept} records kept")
        raise
    finally:
        child.join(5)
        if child.is_alive():
            _kill_group(child)
    kind, body = result
    if kind == "ok":
        return body
    if kind == "value":
        raise ValueError(body)
    code = child.exitcode
    raise RuntimeError(f"{body} (tuning process exit code {code})")


def _kill_group(child) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()
    child.join(10)


def _leave_whole(db: Path, log) -> int:
    """Drop a half-written last line of either database file; the records kept."""
    for name in (WORKLOADS, RECORDS):
        drop_torn_tail(db / name, log)
    return count_records(db)

"""``intvit tune``: MetaSchedule over the integer model's kernels.

The database (``DIR/database_workload.json``, ``DIR/database_tuning_record.json``) is
MetaSchedule's JSON database: records are appended as candidates are measured, so an
interrupted job keeps them, and a rerun with the same ``DIR`` starts from them. Packed GEMMs
(dense and attention's) are searched over their knobs (register tile, parallel split,
epilogue: :mod:`intvit.schedules.gemm_knobs`), row kernels (softmax, GELU, LayerNorm,
requantize) and the rest over MetaSchedule's generic space; each kernel first gets a measured
record of intvit's own schedule, so the database's best is never the slower. Fused low-rank
linears keep their fixed schedule. ``intvit compile --db DIR`` applies the database, and
gives every kernel without a record intvit's own schedule.

``trials`` is the budget of the database, not of one run: a rerun counts the successful
trials already recorded for the same kernels and runs only the rest (with the same budget,
nothing: the database makes a second run free; with a larger one, it extends it).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import tvm
from tvm import relax

from intvit.deploy.compile import scheduled_module
from intvit.deploy.targets import TargetPreset, get_preset
from intvit.quant.int_model import IntModel
from intvit.schedules.database import (  # noqa: F401  (the tuner's API too)
    MODULE_EQUALITY,
    RECORDS,
    WORKLOADS,
    apply_database,
    check_database,
    count_records,
    drop_torn_tail,
    extract_tasks,
    open_database,
)
from intvit.schedules.tvm_intrinsics import import_tvm_tensor_intrinsics
from intvit.topi.kinds import kernel_kind
from intvit.tune.budget import BudgetedCommit
from intvit.tune.progress import TrialProgress


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """A tuning job. ``tracker``/``key``: measure on that RPC device (else locally)."""

    preset: str = "host"
    trials: int = 64
    db: Path = Path("tune-db")
    tracker: str | None = None
    key: str | None = None
    trials_per_task: int | None = None
    trials_per_iter: int = 16
    batch: int = 1
    seed: int = 0
    #: only kernels of these kinds (intvit.topi.kinds: softmax, gelu, ...) or whose name
    #: starts with one of these (TVM's FP32 kernels carry no kind)
    ops: tuple[str, ...] | None = None
    progress: bool = True  # a bar over the trials with the time left

    def __post_init__(self) -> None:
        if (self.tracker is None) != (self.key is None):
            raise ValueError("--tracker and --device go together (measure on that RPC device)")


def _runner(cfg: TuneConfig):
    """MetaSchedule's runner: local, or over the tracker with one worker per server
    registered for the key, so that a farm of devices measures candidates in parallel."""
    from tvm.s_tir import meta_schedule as ms

    if cfg.tracker is None:
        return ms.runner.LocalRunner()  # what tune_relax makes of "local"
    from intvit.deploy.rpc import connect_tracker, parse_address, servers_for_key

    host, port = parse_address(cfg.tracker)
    tracker = connect_tracker(host, port)  # a clear error now if the tracker is not there
    servers = servers_for_key(tracker.summary(), cfg.key)
    if servers == 0:
        raise ValueError(
            f"no server for key {cfg.key!r} is registered with the tracker at {cfg.tracker}; "
            f"start one with intvit device serve/emulate-arm --key {cfg.key}"
        )
    rpc = ms.runner.RPCConfig(
        tracker_host=host, tracker_port=port, tracker_key=cfg.key, session_timeout_sec=120
    )
    from intvit.tune.build import alloc_random_arguments

    return ms.runner.RPCRunner(rpc, f_alloc_argument=alloc_random_arguments, max_workers=servers)


def _builder(preset: TargetPreset):
    """MetaSchedule's builder with intvit's build step (:mod:`intvit.tune.build`), exporting
    a ``.so`` linked here (with the preset's cross compiler) for cross targets, so the device
    never has to link a ``.tar`` itself."""
    from tvm.s_tir import meta_schedule as ms

    from intvit.tune.build import build_candidate

    if preset.cross_compiler is None:
        return ms.builder.LocalBuilder(f_build=build_candidate)
    import tempfile

    from tvm.support import cc

    fcompile = cc.cross_compiler(preset.cross_compiler)

    def export(mod) -> str:
        path = Path(tempfile.mkdtemp(prefix="intvit-ms-")) / "candidate.so"
        mod.export_library(str(path), fcompile=fcompile)
        return str(path)

    return ms.builder.LocalBuilder(f_build=build_candidate, f_export=export)


@dataclass(frozen=True)
class TuneSummary:
    """What a tuning job did: the database's records before and after, the budget (in
    successful trials, of the database), the trials already recorded when it started, those
    it seeded with intvit's row schedules and those MetaSchedule measured (some dropped past
    the budget), the failed candidates and the last error, and its wall time."""

    preset: str
    db: str
    records_before: int
    records_after: int
    budget: int
    already_done: int
    seeded: int
    measured: int
    dropped_over_budget: int
    failed: int
    last_error: str | None
    seconds: float


def tune(model: IntModel, cfg: TuneConfig, log=print) -> TuneSummary:
    """Run (or resume) a tuning job over the integer model's kernels; returns a summary with
    the record counts."""
    preset = get_preset(cfg.preset)
    mod = scheduled_module(model, preset, cfg.batch, tunable=True)
    return tune_module(mod, cfg, log, seed_rows=preset.cores > 1)


def tune_float_model(torch_model, image_shape: tuple[int, ...], cfg: TuneConfig, log=print):
    """The same job over TVM's FP32 build of the float model (the baseline that gets the same
    budget); :func:`intvit.deploy.compile.compile_float_model` applies its database."""
    from intvit.deploy.compile import fused_float_module

    return tune_module(fused_float_module(torch_model, image_shape, cfg.preset), cfg, log)


def tune_module(
    mod: tvm.IRModule, cfg: TuneConfig, log=print, seed_rows: bool = False
) -> TuneSummary:
    """Run (or resume) a tuning job over the kernels of any Relax module (the integer model's,
    or the FP32 baseline's: the same job, so both get the same budget). Packed GEMMs first
    get a measured record of their default knobs, and with ``seed_rows`` row kernels one of
    intvit's row schedule (:mod:`intvit.tune.seed`); those count against the budget like any
    other trial."""
    from tvm.s_tir import meta_schedule as ms

    preset = get_preset(cfg.preset)
    target = preset.tvm_target()
    db = Path(cfg.db)
    db.mkdir(parents=True, exist_ok=True)
    if (db / WORKLOADS).exists() or (db / RECORDS).exists():
        for name in (WORKLOADS, RECORDS):
            drop_torn_tail(db / name, log)
        check_database(db)  # a corrupt line is named here, not deep inside MetaSchedule
    before = count_records(db)
    with target:
        mod = relax.transform.LegalizeOps()(mod)
    # Kernels intvit scheduled itself are left out (MetaSchedule cannot even estimate the
    # FLOPs of a tensorized kernel: "Do not have a default for prim.Broadcast").
    op_names = [
        gv.name_hint
        for gv, f in mod.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc)
        and not f.attrs.get("tirx.is_scheduled", False)
        and (cfg.ops is None or kernel_kind(f) in cfg.ops or gv.name_hint.startswith(cfg.ops))
    ]
    if not op_names:
        raise ValueError(f"no kernel to tune (ops={cfg.ops})")
    start = time.monotonic()
    done = recorded_trials(mod, target, db, op_names)
    todo = cfg.trials - done
    log(
        f"tuning {preset.name}: budget {cfg.trials} trials, {done} already in {db}"
        + (f", {todo} to run" if todo > 0 else ": nothing to run")
    )
    seeded = 0
    if todo > 0:
        from intvit.tune.seed import seed_hand_schedules

        seeded = seed_hand_schedules(
            mod, preset, db, op_names, _builder(preset), _runner(cfg), todo, seed_rows, log
        )
        todo -= seeded
        if seeded:
            log(f"measured intvit's own schedule of {seeded} kernels (counted in the budget)")
    progress = TrialProgress(max(todo, 0), enabled=cfg.progress and todo > 0)
    if todo > 0:
        import_tvm_tensor_intrinsics()  # TuneContext imports it: minutes, unless done this way
        # MetaSchedule's default callbacks, with its AddToDatabase replaced by one that
        # never commits past the budget (MetaSchedule overshoots it by up to a batch)
        commit = BudgetedCommit(todo)
        callbacks = [
            commit,
            ms.measure_callback.RemoveBuildArtifact(),
            ms.measure_callback.UpdateCostModel(),
            progress,
        ]
        try:
            with stop_on_sigint(progress):
                _tune_relax(mod, target, db, todo, cfg, op_names, preset, callbacks)
        except Exception:
            # TuningStopped comes back through TVM's FFI as another error type
            if not progress.stop_requested:
                raise
        finally:
            progress.close()
        if progress.stop_requested:
            log(f"interrupted: {count_records(db) - before} new records kept in {db}")
            raise KeyboardInterrupt
    after = count_records(db)
    summary = TuneSummary(
        preset=preset.name,
        db=str(db),
        records_before=before,
        records_after=after,
        budget=cfg.trials,
        already_done=done,
        seeded=seeded,
        measured=progress.measured,
        dropped_over_budget=commit.dropped if todo > 0 else 0,
        failed=progress.failed,
        last_error=progress.last_error,
        seconds=time.monotonic() - start,
    )
    log(f"{after - before} new records in {summary.seconds:.0f}s; database holds {after}")
    if progress.failed:
        first_line = (progress.last_error or "").strip().splitlines()[-1:] or [""]
        log(f"{progress.failed} of {progress.measured} candidates failed; last: {first_line[0]}")
    return summary


@contextlib.contextmanager
def stop_on_sigint(progress: TrialProgress):
    """While tuning, the first Ctrl-C asks the job to stop after the batch being measured
    (a KeyboardInterrupt raised inside MetaSchedule's C++ loop is swallowed there, or
    crashes it); a second one interrupts at once. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        progress.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "\nstopping after the batch being measured (Ctrl-C again: at once, losing it)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def recorded_trials(mod: tvm.IRModule, target, db: Path, op_names: list[str]) -> int:
    """How many successful trials the database already holds for the kernels of ``mod``
    that a job over ``op_names`` tunes (what a rerun's budget is counted against)."""
    if count_records(db) == 0:
        return 0
    database = open_database(db)
    done = 0
    for task in extract_tasks(mod, target):
        if not any(name in task.task_name for name in op_names):
            continue
        kernel = task.dispatched[0]
        if database.has_workload(kernel):
            done += len(database.get_top_k(database.commit_workload(kernel), 1 << 20))
    return done


def _tune_relax(
    mod, target, db: Path, trials: int, cfg: TuneConfig, op_names, preset, callbacks
) -> None:
    """MetaSchedule's ``tune_relax``, with each task's design space chosen by
    :func:`intvit.tune.spaces.task_space` (the packed GEMMs' knobs)."""
    import logging

    from tvm.s_tir import meta_schedule as ms

    from intvit.tune.spaces import tune_contexts

    # TVM rebuilds its logging config from the names of the handlers on its logger and fails
    # on a handler without a name ("'NoneType' object has no attribute 'format'"), which test
    # runners and applications may have attached: those are left out of the tuning job.
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in list(logger.handlers):
        if handler.get_name() is None:
            logger.removeHandler(handler)
    tasks = [
        task
        for task in extract_tasks(mod, target)
        if any(name in task.task_name for name in op_names)
    ]
    contexts, weights = tune_contexts(tasks, preset.target, str(db), cfg.seed, preset.cores)
    ms.tune.tune_tasks(
        tasks=contexts,
        task_weights=weights,
        work_dir=str(db),
        max_trials_global=trials,
        max_trials_per_task=cfg.trials_per_task,
        num_trials_per_iter=min(cfg.trials_per_iter, trials),
        builder=_builder(preset),
        runner=_runner(cfg),
        measure_callbacks=callbacks,
        module_equality=MODULE_EQUALITY,
    )

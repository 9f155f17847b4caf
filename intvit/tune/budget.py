"""A tuning job's records, committed one candidate at a time and never past its budget.

MetaSchedule hands out candidates in batches of ``num_trials_per_iter`` per task and checks
its global budget only between batches, so a job with ``--trials 40`` used to write up to a
batch more (52 records, seen after a SIGKILL). This callback takes the place of
MetaSchedule's ``AddToDatabase``: it commits each measured candidate as its own line of the
JSON database (so a killed job keeps every record up to the kill) and drops the candidates
measured past the budget, which are counted in :attr:`BudgetedCommit.dropped`.
"""

from __future__ import annotations

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

#: MetaSchedule's run time for a candidate that failed to build or run (``AddToDatabase``'s)
FAILED_RUN_SECS = 1e10


@derived_object
class BudgetedCommit(PyMeasureCallback):
    """Commits measured candidates to the task scheduler's database, at most ``budget``."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.committed = 0
        self.dropped = 0

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        from tvm.s_tir.meta_schedule.database import TuningRecord
        from tvm.tirx import FloatImm

        database = task_scheduler.database_
        ctx = task_scheduler.tasks_[task_id].ctx
        workload = database.commit_workload(ctx.mod)
        for candidate, built, ran in zip(
            measure_candidates, builder_results, runner_results, strict=True
        ):
            if self.committed >= self.budget:
                self.dropped += 1
                continue
            ok = built.error_msg is None and ran.error_msg is None and ran.run_secs
            run_secs = list(ran.run_secs) if ok else [FloatImm("float32", FAILED_RUN_SECS)]
            record = TuningRecord(
                candidate.sch.trace, workload, run_secs, ctx.target, candidate.args_info
            )
            database.commit_tuning_record(record)
            self.committed += 1

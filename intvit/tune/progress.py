"""Progress of a tuning job: a bar over the trial budget with the time left, fed by a
MetaSchedule measure callback after every batch of measured candidates."""

from __future__ import annotations

import time

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback


class TuningStopped(Exception):
    """Raised from the measure callback to end a job the user interrupted."""


@derived_object
class TrialProgress(PyMeasureCallback):
    """Counts measured candidates against ``total`` trials; shows a tqdm bar (its remaining
    time is the time-left estimate) when ``enabled``, and keeps the counts either way."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.total = total
        self.measured = 0
        self.failed = 0
        self.last_error: str | None = None  # the newest build or run error, for the summary
        self.started = time.monotonic()
        #: set by a SIGINT handler; the next batch's callback ends the job (see ``apply``)
        self.stop_requested = False
        self.bar = tqdm(total=total, desc="tune", unit="trial", disable=not enabled)

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        n = len(measure_candidates)
        self.measured += n
        for b, r in zip(builder_results, runner_results, strict=False):
            error = b.error_msg if b.error_msg is not None else r.error_msg
            if error is not None:
                self.failed += 1
                self.last_error = str(error)
        self.bar.update(min(n, self.total - self.bar.n))
        self.bar.set_postfix(task=task_id, failed=self.failed)
        if self.stop_requested:
            # Ctrl-C: this batch is in the database already (the default callbacks, run
            # first, committed it); unwind the scheduler's loop from here.
            raise TuningStopped("tuning stopped at the user's request")

    def close(self) -> None:
        self.bar.close()

"""``intvit tune``: a MetaSchedule tuning job over an integer model's kernels (the packed
GEMMs' knobs and the row kernels), on this host or an RPC device, into a resumable
database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from intvit.tune.job import TuneConfig
    from intvit.tune.knobs_report import TunedGemm


@dataclass(frozen=True, kw_only=True)
class TuneResult:
    """The database a job wrote and, per packed GEMM shape, the knobs it chose."""

    db: Path
    gemms: tuple[TunedGemm, ...]
    #: how to build with the records
    apply_command: str


def run_tune(artifact: Path, cfg: TuneConfig) -> TuneResult:
    """Tune the integer model at ``artifact`` as ``cfg`` says; an interrupt (Ctrl-C, SIGTERM)
    stops the job with the records measured so far kept in ``cfg.db``."""
    from intvit.deploy.targets import get_preset
    from intvit.quant.artifact import load_int_model
    from intvit.tune.interruptible import tune_interruptibly
    from intvit.tune.knobs_report import tuned_gemms

    tune_interruptibly(load_int_model(artifact), cfg)
    return TuneResult(
        db=cfg.db,
        gemms=tuple(tuned_gemms(cfg.db, get_preset(cfg.preset))),
        apply_command=f"intvit compile {artifact} --target {cfg.preset} --db {cfg.db}",
    )

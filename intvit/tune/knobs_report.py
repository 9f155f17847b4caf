"""What a tuning database chose for each packed GEMM: the knobs of its best record against
the default knobs' record (which every job measures first), per GEMM shape."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from intvit.deploy.targets import TargetPreset
from intvit.schedules.database import open_database
from intvit.schedules.gemm_knobs import GemmKnobs, knobs_of_trace
from intvit.schedules.intrinsics import gemm_kernels_for, kernel_of_func
from intvit.topi.kinds import PACKED_GEMM, kernel_kind


@dataclass(frozen=True)
class TunedGemm:
    """One packed GEMM workload of a database: its shape (``x`` operand x output), the
    micro-kernel, the default knobs and their measured time (None if the job did not
    measure them), the best record's knobs and time (microseconds), and how many of its
    records the job measured."""

    shape: str
    kernel: str
    default: GemmKnobs | None
    default_us: float | None
    best: GemmKnobs
    best_us: float
    records: int

    @property
    def speedup(self) -> float | None:
        return None if self.default_us is None else self.default_us / self.best_us

    def row(self) -> str:
        gain = "" if self.speedup is None else f"{self.speedup:.2f}x"
        default = "-" if self.default_us is None else f"{self.default} {self.default_us:.1f} us"
        return (
            f"{self.shape:<24} {self.kernel:<14} {default:<34} "
            f"{self.best} {self.best_us:.1f} us {gain:>7} ({self.records} measured)"
        )


def _shape(func) -> str:
    """``"197x192 -> 576"`` (x's shape, the output's last axis) or ``"3x197x64 @ 3x197x64"``
    (a batch matmul's operands)."""
    from tvm.s_tir import meta_schedule as ms

    shapes = [[int(d) for d in info.shape] for info in ms.arg_info.ArgInfo.from_prim_func(func)]
    dims = ["x".join(map(str, shape)) for shape in shapes]
    if len(shapes) == 3:  # batch matmul: a, b, out
        return f"{dims[0]} @ {dims[1]}"
    return f"{dims[0]} -> {shapes[-1][-1]}"


def tuned_gemms(db: str | Path, preset: TargetPreset) -> list[TunedGemm]:
    """Each packed GEMM workload of the database at ``db`` (tuned for ``preset``), with the
    knobs its best record applies and those of its default-knob record."""
    from tvm import s_tir

    import intvit.schedules.intrinsics  # noqa: F401  (the traces' tensor intrinsics)
    from intvit.schedules.gemm import default_knobs, gemm_facts

    kernels = gemm_kernels_for(preset.target)
    database = open_database(db)
    by_workload: dict[str, list] = {}
    for record in database.get_all_tuning_records():
        by_workload.setdefault(record.workload.mod.script(show_meta=False), []).append(record)
    out = []
    for records in by_workload.values():
        func = records[0].workload.mod["main"]
        if kernel_kind(func) != PACKED_GEMM:
            continue
        kernel = kernel_of_func(func, kernels)
        default = default_knobs(
            gemm_facts(s_tir.Schedule(func), kernel, preset.cores > 1),
            kernel,
        )
        timed = []
        for record in records:
            knobs = knobs_of_trace(record.trace, kernel.rows)
            secs = [float(s) for s in (record.run_secs or [])]
            if knobs is not None and secs:
                timed.append((sum(secs) / len(secs) * 1e6, knobs))
        if not timed:
            continue
        best_us, best = min(timed, key=lambda t: t[0])
        default_us = min((us for us, k in timed if k == default), default=None)
        out.append(
            TunedGemm(_shape(func), kernel.name, default, default_us, best, best_us, len(timed))
        )
    return sorted(out, key=lambda t: -t.best_us)

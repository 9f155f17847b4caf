"""The one record shape every benchmark in the project writes, and the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from intvit.paths import write_text_atomic


def machine_info() -> dict:
    """CPU, SIMD features, usable cores, TVM thread count and version (recorded with figures)."""
    import tvm

    from intvit.deploy.targets import host_cpu

    cpu, feats = host_cpu()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu,
        "features": list(feats),
        "machine": platform.machine(),
        "cores_online": os.cpu_count(),
        "cores_usable": usable,
        "threads": int(tvm.runtime.num_threads()),
        "tvm": tvm.__version__,
    }


def host_named(path: str | Path, machine: dict) -> Path:
    """``results/<bench>.json`` -> ``results/<bench>-<cpu>-<threads>t.json``: the file of this
    host's CPU (LLVM's name) and thread count."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{machine['cpu']}-{machine['threads']}t{path.suffix}")


@dataclass
class BenchRecord:
    """``speedup = baseline_ms / ours_ms`` (> 1: ours is faster)."""

    case: str
    ours: str
    baseline: str
    ours_ms: float
    baseline_ms: float
    speedup: float = field(init=False)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.speedup = self.baseline_ms / self.ours_ms if self.ours_ms > 0 else float("nan")

    def as_dict(self, machine: dict | None = None) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        if machine is not None:
            d["machine"] = machine["cpu"]
            d["threads"] = machine["threads"]
        return d


def write_records(
    path: str | Path, records: list[BenchRecord], machine: dict, earlier: list[dict] = ()
) -> Path:
    """Write the records as a JSON list after ``earlier`` (records already in the file's
    form); partial results are written as they come."""
    payload = [*earlier, *(r.as_dict(machine) for r in records)]
    return write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def read_record_dicts(path: Path) -> list[dict]:
    """The records a results file holds (none if it does not exist); ValueError naming the
    file if it is not a JSON list of records (rather than overwrite it)."""
    if not path.is_file():
        return []
    try:
        body = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, list) or not all(isinstance(d, dict) and "case" in d for d in body):
        raise ValueError(f"{str(path)!r} is not a JSON list of benchmark records; move it away")
    return body


@dataclass
class RecordLog:
    """Benchmark records as they are measured, rewritten to ``path`` after each one (an
    interrupted run keeps what it finished), each echoed as the line ``echo`` makes of it.

    The file keeps the records of earlier runs for the cases this run does not measure
    (``earlier``, as read): a run over one model replaces that model's records and leaves
    the others'."""

    path: Path
    machine: dict
    records: list[BenchRecord] = field(default_factory=list)
    echo: Callable[[BenchRecord], str] | None = None
    earlier: list[dict] = field(default_factory=list)

    @classmethod
    def on_this_machine(
        cls, path: str | Path, echo: Callable[[BenchRecord], str] | None = None
    ) -> RecordLog:
        """A log for a benchmark script: the machine it runs on, measured and printed once; the
        file named by host (:func:`host_named`), so another host's run writes its own."""
        machine = machine_info()
        print(f"machine: {machine}", flush=True)
        path = host_named(path, machine)
        return cls(path, machine, echo=echo, earlier=read_record_dicts(path))

    def add(self, record: BenchRecord) -> None:
        self.records.append(record)
        measured = {r.case for r in self.records}
        kept = [d for d in self.earlier if d.get("case") not in measured]
        write_records(self.path, self.records, self.machine, kept)
        if self.echo is not None:
            print(self.echo(record), flush=True)

    def summary(self) -> str:
        """The table of every record and where they were written."""
        return f"{format_table(self.records)}\nwrote {self.path}"


def format_table(records: list[BenchRecord]) -> str:
    """The records as an aligned text table (columns as wide as their longest entry)."""
    case_w = max([len("case"), *(len(r.case) for r in records)]) + 2
    ours_w = max([len("ours"), *(len(r.ours) for r in records)]) + 2
    base_w = max([len("baseline"), *(len(r.baseline) for r in records)]) + 2
    header = (
        f"{'case':<{case_w}}{'ours':<{ours_w}}{'baseline':<{base_w}}"
        f"{'ours ms':>10}{'base ms':>10}{'speedup':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(
            f"{r.case:<{case_w}}{r.ours:<{ours_w}}{r.baseline:<{base_w}}"
            f"{r.ours_ms:>10.3f}{r.baseline_ms:>10.3f}{r.speedup:>8.2f}x"
        )
    return "\n".join(lines)

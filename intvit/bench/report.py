"""The benchmark report: one object written as JSON after every measurement (so a failure
keeps what was measured), plus a terminal table, Markdown and a PNG chart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from intvit.deploy.bench import Latency, OpTime, category_totals
from intvit.paths import write_text_atomic

if TYPE_CHECKING:
    from intvit.deploy.memory import MemoryReport


@dataclass
class BenchReport:
    """Latencies of the integer model and its peers on one device, and per-op profiles."""

    model: str
    device: str
    preset: str
    emulated: bool = False
    device_info: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    latencies: list[Latency] = field(default_factory=list)
    per_op: dict[str, list[OpTime]] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    #: the integer library's memory per inference (its manifest's ``memory``)
    memory: MemoryReport | None = None

    @property
    def reference(self) -> Latency | None:
        """The integer-only model's latency (the first one measured)."""
        return self.latencies[0] if self.latencies else None

    def ratios(self) -> dict[str, float]:
        """Each peer's median over the integer model's (> 1: integer-only is faster)."""
        ref = self.reference
        if ref is None:
            return {}
        return {lat.label: lat.median_ms / ref.median_ms for lat in self.latencies[1:]}

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "device": self.device,
            "preset": self.preset,
            "emulated": self.emulated,
            "latency_note": "emulated device: latency is meaningless, results are checked"
            if self.emulated
            else "",
            "device_info": self.device_info,
            "config": self.config,
            "libraries": self.libraries,
            "memory": None if self.memory is None else self.memory.as_dict(),
            "status": self.status,
            "error": self.error,
            "latencies": [lat.as_dict() for lat in self.latencies],
            "speedup_vs": self.ratios(),
            "per_op": {
                label: {
                    "total_ms": sum(o.total_ms for o in ops),
                    "by_category_ms": category_totals(ops),
                    "kernels": [vars(o) for o in ops],
                }
                for label, ops in self.per_op.items()
            },
        }

    def write_json(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(self.as_dict(), indent=2) + "\n")

    def table(self) -> str:
        head = f"{'model build':<30}{'where':<18}{'median ms':>11}{'p10-p90 ms':>19}{'ratio':>8}"
        lines = [head, "-" * len(head)]
        ratios = self.ratios()
        for lat in self.latencies:
            lo, hi = lat.spread_ms
            ratio = ratios.get(lat.label)
            r = f"{ratio:>7.2f}x" if ratio is not None else f"{'1.00x':>8}"
            lines.append(
                f"{lat.label:<30}{lat.where:<18}{lat.median_ms:>11.3f}{lo:>9.3f}-{hi:<9.3f}{r}"
            )
        if self.emulated:
            lines.append("(emulated device: latency is meaningless; correctness is checked)")
        if self.memory is not None:
            lines.append("integer-only " + self.memory.summary())
        for label, ops in self.per_op.items():
            total = sum(o.total_ms for o in ops)
            ref = self.reference.median_ms if self.reference else float("nan")
            lines.append(f"\nper-operator profile, {label} (kernels sum {total:.3f} ms):")
            for cat, ms in category_totals(ops).items():
                lines.append(f"  {cat:<12}{ms:>10.3f} ms {100 * ms / total:>6.1f}%")
            if label == (self.reference.label if self.reference else None):
                lines.append(f"  (whole model measured {ref:.3f} ms)")
        return "\n".join(lines)

    def markdown(self) -> str:
        ratios = self.ratios()
        out = [
            f"# {self.model} on {self.device} ({self.preset})",
            "",
            f"Status: {self.status}" + (f" ({self.error})" if self.error else ""),
            "",
            "| model build | where | median ms | p10 ms | p90 ms | peer / integer |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for lat in self.latencies:
            lo, hi = lat.spread_ms
            ratio = ratios.get(lat.label)
            r = f"{ratio:.2f}x" if ratio is not None else "1.00x"
            out.append(
                f"| {lat.label} | {lat.where} | {lat.median_ms:.3f} | {lo:.3f} | {hi:.3f} | {r} |"
            )
        if self.emulated:
            out += ["", "Emulated device: latency is meaningless; correctness is what counts."]
        for label, ops in self.per_op.items():
            total = sum(o.total_ms for o in ops)
            out += ["", f"## Per-operator profile: {label}", "", "| category | ms | share |"]
            out.append("|---|---:|---:|")
            for cat, ms in category_totals(ops).items():
                out.append(f"| {cat} | {ms:.3f} | {100 * ms / total:.1f}% |")
        return "\n".join(out) + "\n"

    def write_png(self, path: str | Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        panels = 2 if self.per_op else 1
        fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
        ax = axes[0][0]
        labels = [lat.label for lat in self.latencies]
        medians = [lat.median_ms for lat in self.latencies]
        errs = [
            [m - lat.spread_ms[0] for m, lat in zip(medians, self.latencies, strict=True)],
            [lat.spread_ms[1] - m for m, lat in zip(medians, self.latencies, strict=True)],
        ]
        ax.barh(labels, medians, xerr=errs, color="#4c72b0")
        ax.invert_yaxis()
        ax.set_xlabel("median latency (ms), p10-p90")
        ax.set_title(f"{self.model} on {self.device}" + (" (emulated)" if self.emulated else ""))
        if self.per_op:
            ax = axes[0][1]
            totals = [category_totals(ops) for ops in self.per_op.values()]
            cats: list[str] = []
            for per_cat in totals:
                cats += [c for c in per_cat if c not in cats]
            left = [0.0] * len(self.per_op)
            for cat in cats:
                vals = [per_cat.get(cat, 0.0) for per_cat in totals]
                ax.barh(list(self.per_op), vals, left=left, label=cat)
                left = [a + b for a, b in zip(left, vals, strict=True)]
            ax.invert_yaxis()
            ax.set_xlabel("kernel time (ms)")
            ax.set_title("where the time goes")
            ax.legend(fontsize=7)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def write_all(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        out_dir = Path(out_dir)
        paths = {"json": self.write_json(out_dir / f"{stem}.json")}
        md = out_dir / f"{stem}.md"
        md.write_text(self.markdown())
        paths["markdown"] = md
        if self.latencies:
            paths["png"] = self.write_png(out_dir / f"{stem}.png")
        return paths

"""Benchmark (a model, not a measurement): whole models on ARM cores, counted and costed.

    .venv/bin/python benchmarks/arm_model.py [--models digits_vit,...] [--cores graviton,...]
                                             [--no-calibration] [--work DIR]

For each model (random weights, seed 0) and each modelled core (Graviton2 = Neoverse N1,
Graviton3 = Neoverse V1, Raspberry Pi 4 = Cortex-A72, Raspberry Pi 5 = Cortex-A76), every
build runs batch 1 in one thread under ``qemu-aarch64`` with the emulated CPU of that core:
intvit's library for the core's preset, TVM's FP32 build (untuned), ONNX Runtime FP32, int8
static QDQ and int8 dynamic, and XNNPACK FP32 and int8 through LiteRT (converted by
litert-torch: the ``xnnpack`` extra, or a venv of its own given as --litert-python). A TCG
plugin counts every executed block exactly; llvm-mca costs each block on the core's model.
Reported per build: instructions per inference (exact), their mix, modelled cycles and
milliseconds at the core's usual clock, the ratio to intvit, and for intvit the share of each
kernel category. ``--only`` restricts the builds (e.g. a run of the XNNPACK peer alone).

Calibration (this x86 host): the same method on intvit's and TVM FP32's AVX2 builds and ONNX
Runtime's, under ``qemu-x86_64``, against their measured one-thread time here. Its error is the
error bar of every ARM figure.

With --kernels, also the seed's kernel tables (MLSys'23 Tables 3-4 shapes) on every core: the
default integer softmax, GELU and LayerNorm against TVM FP32 (libm and fast-math) and ONNX
Runtime's own operator, beside the seed's measured A13/M1 speed-ups.

Writes benchmarks/results/arm_model.json as it goes (a rerun with the same --work reuses
nothing but the sysroot: counting is cheap next to compiling).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"  # calibration times one thread, like the counted runs

from intvit.analysis.block_cost import MODEL_CAVEAT
from intvit.analysis.emulated_cores import CORES, get_core
from intvit.analysis.qemu_count import CountError
from intvit.bench.modelled import (
    FP32_PEERS,
    INT8_PEERS,
    INTVIT,
    ORT_BUILDS,
    XNNPACK_FP32,
    XNNPACK_INT8,
    BuildError,
    calibrate_on_host,
    litert_builds,
    litert_python,
    ort_builds,
    prepare_model,
    profile_on_core,
)
from intvit.bench.modelled_kernels import CASES, FP32_TWINS, kernel_rows
from intvit.bench.records import machine_info
from intvit.paths import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "arm_model.json"
MODELS = ("digits_vit", "digits_lowrank", "deit_tiny_patch16_224", "deit_small_patch16_224")


class Report:
    """The JSON report, rewritten after every record."""

    def __init__(self, path: Path, models: list[str], cores: list[str]):
        self.path = path
        self.data = {
            "machine": machine_info(),
            "caveat": MODEL_CAVEAT,
            "cores": {c: {"note": CORES[c].note, "clock_ghz": CORES[c].clock_ghz} for c in cores},
            "models": models,
            "profiles": [],
            "errors": [],
            "calibration": [],
            "kernel_tables": [],
        }

    def add(self, key: str, item: dict) -> None:
        self.data[key].append(item)
        write_text_atomic(self.path, json.dumps(self.data, indent=1) + "\n")


def ratios(profiles: list[dict]) -> list[str]:
    """One line per (model, core): intvit's cycles against the best int8 and FP32 peers."""
    lines = []
    keys = sorted({(p["model"], p["core"]) for p in profiles})
    for model, core in keys:
        rows = {p["build"]: p for p in profiles if (p["model"], p["core"]) == (model, core)}
        if INTVIT not in rows:
            continue
        ours = rows[INTVIT]["cycles"]
        parts = []
        for label, group in (("int8", INT8_PEERS), ("FP32", FP32_PEERS)):
            peers = [rows[b] for b in group if b in rows]
            if peers:
                best = min(peers, key=lambda p: p["cycles"])
                parts.append(
                    f"{ours / best['cycles']:.2f}x the cycles of {best['build']} ({label})"
                )
        lines.append(f"{model} on {core}: intvit needs " + ", ".join(parts))
    return lines


def print_profile(p: dict) -> None:
    mix = p["mix"]
    total = max(sum(mix.values()), 1)
    shares = " ".join(f"{k} {v / total:.0%}" for k, v in mix.items())
    print(
        f"  {p['core']:<10}{p['build']:<18}{p['instructions'] / 1e6:>10.2f} M instr"
        f"{p['cycles'] / 1e6:>10.2f} M cycles{p['ms']:>9.3f} ms (bound {p['bound_ms']:.3f})"
        f"   {shares}",
        flush=True,
    )
    if p["build"] == INTVIT and p["categories"]:
        cats = sorted(p["categories"].items(), key=lambda kv: -kv[1])
        kernels = sum(p["categories"].values())
        print(
            "      kernels: "
            + ", ".join(f"{c} {v / p['cycles']:.0%}" for c, v in cats)
            + f"; runtime and libc {1 - kernels / p['cycles']:.0%}",
            flush=True,
        )


def markdown(data: dict) -> str:
    """The report as Markdown tables: per model and core, intvit against the best int8 and the
    best FP32 peer (modelled ms, ratio of cycles); the calibration; the kernel tables."""
    out = [
        "| model | core | intvit ms | best int8 peer | intvit / it | best FP32 peer "
        "| intvit / it |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    profiles = data["profiles"]
    for model in data["models"]:
        for core in data["cores"]:
            rows = {p["build"]: p for p in profiles if (p["model"], p["core"]) == (model, core)}
            if INTVIT not in rows:
                continue
            ours = rows[INTVIT]
            cells = [model, core, f"{ours['ms']:.2f}"]
            for group in (INT8_PEERS, FP32_PEERS):
                peers = [rows[b] for b in group if b in rows]
                if not peers:
                    cells += ["-", "-"]
                    continue
                best = min(peers, key=lambda p: p["cycles"])
                cells += [
                    f"{best['build']} {best['ms']:.2f}",
                    f"{ours['cycles'] / best['cycles']:.2f}x",
                ]
            out.append("| " + " | ".join(cells) + " |")
    out += ["", *category_table(data)]
    if data.get("calibration"):
        out += [
            "",
            "| calibration (x86 host) | model | modelled ms (bound) | measured ms "
            "| error (bound) | same code |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for c in data["calibration"]:
            out.append(
                f"| {c['build']} | {c['model']} | {c['modelled_ms']:.3f} ({c['bound_ms']:.3f}) | "
                f"{c['measured_ms']:.3f} | {c['error']:+.0%} ({c['bound_error']:+.0%}) | "
                f"{'yes' if c['same_code'] else 'no'} |"
            )
    if data.get("kernel_tables"):
        out += [
            "",
            "| kernel | core | int M cycles | vs TVM libm | vs TVM fast-math | vs ORT op "
            "| seed A13 / M1 |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in data["kernel_tables"]:
            sp = r["speedups"]
            cells = [f"{sp[k]:.2f}x" if k in sp else "-" for k in FP32_TWINS]
            seed = " / ".join(f"{v:.2f}x" for v in r["seed"].values())
            ours = r["cycles"]["intvit int"] / 1e6
            head = f"| {r['case']} ({r['variant']}) | {r['core']} | {ours:.2f} | "
            out.append(head + " | ".join(cells) + f" | {seed} |")
    return "\n".join(out)


CATEGORY_COLUMNS = ("gemm", "attention", "softmax", "gelu", "layernorm")


def category_table(data: dict, peer: str = XNNPACK_INT8) -> list[str]:
    """Per model and core, intvit's modelled cycles by kernel category beside ``peer``'s (its
    kernels attributed by their symbols; XNNPACK runs attention's matmuls on its GEMM kernels,
    so its ``gemm`` holds both; its LayerNorm is reductions and elementwise operators, in
    ``rest``), in M cycles: which kernels lose."""
    head = " | ".join(CATEGORY_COLUMNS)
    out = [
        f"| model | core | build | {head} | rest | total |",
        "| --- | --- | --- |" + " --- |" * (len(CATEGORY_COLUMNS) + 2),
    ]
    order = {m: i for i, m in enumerate(data["models"])}
    rows = [p for p in data["profiles"] if p["build"] in (INTVIT, peer) and p["categories"]]
    rows.sort(key=lambda p: (order.get(p["model"], 99), p["core"], p["build"] != INTVIT))
    for p in rows:
        cats = p["categories"]
        rest = p["cycles"] - sum(cats.get(c, 0.0) for c in CATEGORY_COLUMNS)
        cells = [f"{cats.get(c, 0.0) / 1e6:.2f}" for c in CATEGORY_COLUMNS]
        out.append(
            f"| {p['model']} | {p['core']} | {p['build']} | "
            + " | ".join(cells)
            + f" | {rest / 1e6:.2f} | {p['cycles'] / 1e6:.2f} |"
        )
    return out


def print_kernel_row(row: dict) -> None:
    twins = ", ".join(f"{k} {v:.2f}x" for k, v in row["speedups"].items())
    seed = ", ".join(f"{k} {v:.2f}x" for k, v in row["seed"].items())
    print(
        f"  {row['core']:<10}{row['case']:<14}int ({row['variant']}) "
        f"{row['cycles']['intvit int'] / 1e6:8.2f} M cycles; speed-up over {twins}; "
        f"seed measured {seed}",
        flush=True,
    )


#: What identifies a record of each list, for merging: a later part's record replaces an
#: earlier one's with the same key (a quiet rerun of the calibration replaces one timed while
#: other runs loaded the machine; a peer's run replaces the error a run without it recorded).
MERGE_KEYS = {
    "profiles": ("build", "model", "core"),
    "errors": ("build", "model", "core"),
    "calibration": ("build", "model"),
    "kernel_tables": ("case", "core"),
}


def merge(parts: list[Path], out: Path) -> int:
    """One report from several (runs split over processes), later parts replacing earlier
    records with the same key (:data:`MERGE_KEYS`); errors for a build that has a profile are
    dropped. The machine is the first part's."""
    reports = [json.loads(p.read_text()) for p in parts]
    merged = dict(reports[0])
    for key, fields in MERGE_KEYS.items():
        records: dict[tuple, dict] = {}
        for report in reports:
            for item in report.get(key, []):
                records[tuple(item[f] for f in fields)] = item
        merged[key] = list(records.values())
    profiled = {tuple(p[f] for f in MERGE_KEYS["profiles"]) for p in merged["profiles"]}
    merged["errors"] = [
        e for e in merged["errors"] if tuple(e[f] for f in MERGE_KEYS["errors"]) not in profiled
    ]
    merged["models"] = list(dict.fromkeys(m for r in reports for m in r.get("models", [])))
    merged["cores"] = {k: v for r in reports for k, v in r.get("cores", {}).items()}
    missing = not_run(merged)
    if missing:
        merged["not_run"] = missing
    else:
        merged.pop("not_run", None)
    write_text_atomic(out, json.dumps(merged, indent=1) + "\n")
    print("\n".join(ratios(merged["profiles"])))
    print(f"wrote {out}")
    return 0


#: Every build a model is counted as on every core.
ALL_BUILDS = (INTVIT, *FP32_PEERS, *INT8_PEERS)


def not_run(report: dict) -> dict:
    """What a complete report would hold that ``report`` has neither a record nor a named
    error for: builds per (model, core), kernel-table cases per core, calibrated models."""
    done = {(p["model"], p["core"], p["build"]) for p in report.get("profiles", [])}
    done |= {(e["model"], e["core"], e["build"]) for e in report.get("errors", [])}
    builds = []
    for model in report.get("models", []):
        for core in report.get("cores", {}):
            left = [b for b in ALL_BUILDS if (model, core, b) not in done]
            if left:
                builds.append([model, core, left])
    rows = {(r["case"], r["core"]) for r in report.get("kernel_tables", [])}
    cases = [c.name for c in CASES]
    tables = {
        core: left
        for core in report.get("cores", {})
        if (left := [c for c in cases if (c, core) not in rows])
    }
    calibrated = {c["model"] for c in report.get("calibration", [])}
    uncalibrated = [m for m in report.get("models", []) if m not in calibrated]
    missing = {"builds": builds, "kernel_tables": tables, "calibration": uncalibrated}
    return {k: v for k, v in missing.items() if v}


def wanted(only: set[str] | None, labels) -> bool:
    return only is None or any(label in only for label in labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--cores", default=",".join(CORES))
    parser.add_argument("--no-calibration", action="store_true")
    parser.add_argument(
        "--only", default=None, help="comma-separated build labels to run (default: all)"
    )
    parser.add_argument(
        "--litert-python",
        default=None,
        help="a Python with litert-torch, for the XNNPACK (LiteRT) peer (default: this one)",
    )
    parser.add_argument(
        "--kernels", action="store_true", help="also the seed's kernel tables on every core"
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="only print a report's Markdown tables"
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        help="only merge these reports (runs split over processes) into --out",
    )
    parser.add_argument("--work", type=Path, default=None, help="build folder (default: temp)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    models = [m for m in args.models.split(",") if m]
    only = set(args.only.split(",")) if args.only else None
    cores = [get_core(c).name for c in args.cores.split(",") if c]
    work = args.work or Path(tempfile.mkdtemp(prefix="intvit-arm-model-"))
    report = Report(args.out, models, cores)
    print(f"{MODEL_CAVEAT}\nwork folder: {work}", flush=True)
    for name in models:
        case = prepare_model(name, work)
        ort = ort_builds(case) if wanted(only, ORT_BUILDS) else []
        xnnpack = []
        if wanted(only, (XNNPACK_FP32, XNNPACK_INT8)):
            try:
                xnnpack = litert_builds(case, litert_python(args.litert_python))
            except CountError as err:
                print(f"  {err}", flush=True)
                for core_name in cores:
                    for label in (XNNPACK_FP32, XNNPACK_INT8):
                        error = BuildError(label, name, core_name, str(err))
                        report.add("errors", error.as_dict())
        for core_name in cores:
            core = get_core(core_name)
            print(f"{name} on {core.name} ({core.note})", flush=True)
            peers = [b for b in (*ort, *xnnpack) if wanted(only, (b.name,))]
            for item in profile_on_core(case, core, peers, work, only):
                if isinstance(item, BuildError):
                    report.add("errors", item.as_dict())
                    print(f"  {core.name:<10}{item.build:<18}{item.error}", flush=True)
                else:
                    profile = item.as_dict()
                    report.add("profiles", profile)
                    print_profile(profile)
        if not args.no_calibration:
            for point in calibrate_on_host(case, ort, work):
                report.add("calibration", point.as_dict())
                print(
                    f"  calibration {point.build:<18} modelled {point.modelled_ms:8.3f} ms"
                    f" (bound {point.bound_ms:.3f})  measured {point.measured_ms:8.3f} ms"
                    f"  error {point.error:+.0%} (bound {point.bound_error:+.0%})"
                    + ("" if point.same_code else "  (not the same code: see same_code)"),
                    flush=True,
                )
    if args.kernels:
        for core_name in cores:
            for row in kernel_rows(get_core(core_name), work):
                if isinstance(row, BuildError):
                    report.add("errors", row.as_dict())
                    print(f"  {row.core:<10}{row.model:<14}{row.build:<18}{row.error}")
                    continue
                report.add("kernel_tables", row.as_dict())
                print_kernel_row(row.as_dict())
    print("\n".join(ratios(report.data["profiles"])))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

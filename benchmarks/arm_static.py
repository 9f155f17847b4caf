"""Benchmark (static): the GEMM micro-kernels' inner loops on each ARM preset's core and the
host, by llvm-mca-19 and by a resource bound from published core figures.

    .venv/bin/python benchmarks/arm_static.py [--presets graviton,rpi5]

What this is: a model of one inner loop's steady-state throughput (see
:mod:`intvit.deploy.inner_loop`), not a latency. No ARM machine is reachable from this
project's hosts; this is the only ARM performance evidence here. LLVM 19 has no Cortex-A76
model of its own and schedules Apple cores with its Cyclone model (3 SIMD units where M1 has
4), so each record carries llvm-mca's own peak for the same instructions beside the core's.

For every preset, each of its micro-kernels (and, on dotprod presets, the broadcast ``sdot``
form it replaced, as the baseline) on DeiT-tiny and DeiT-small GEMM shapes. Prints a table and
writes benchmarks/results/arm_static.json (records: preset, core, micro_kernel, case,
macs_per_iter, cycles_per_iter_mca, cycles_per_iter_bound, peak_macs_per_cycle,
fraction_of_peak, fraction_of_peak_bound, model_peak_macs_per_cycle, fraction_of_model_peak,
bound_limit, instructions, preset_kernel), written as they are analysed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from intvit.deploy.benchrecord import machine_info
from intvit.deploy.cores import core_model
from intvit.deploy.inner_loop import LoopAnalysis, StaticAnalysisError, analyse_kernel, require_mca
from intvit.deploy.targets import get_preset, list_presets
from intvit.schedules.intrinsics import KERNELS, gemm_kernels_for

RESULTS = Path(__file__).resolve().parent / "results" / "arm_static.json"

#: (case, M tokens, K, N): DeiT-tiny (D 192) and DeiT-small (D 384) at batch 1.
CASES = (
    ("tiny_qkv", 197, 192, 576),
    ("tiny_proj", 197, 192, 192),
    ("tiny_fc1", 197, 192, 768),
    ("tiny_fc2", 197, 768, 192),
    ("small_qkv", 197, 384, 1152),
    ("small_proj", 197, 384, 384),
    ("small_fc1", 197, 384, 1536),
    ("small_fc2", 197, 1536, 384),
)


def _kernels(preset) -> list[tuple[str, bool]]:
    """(kernel name, whether the preset uses it) for the preset's kernels and baselines."""
    used = [k.name for k in gemm_kernels_for(preset.target)]
    extra = ["arm-sdot"] if "arm-sdot-lane" in used else []
    return [(n, True) for n in used] + [(n, False) for n in extra]


def _record(a: LoopAnalysis, used: bool) -> dict:
    def r(v: float | None, d: int = 3) -> float | None:
        return None if v is None else round(v, d)

    return {
        "preset": a.preset,
        "core": a.core,
        "micro_kernel": a.micro_kernel,
        "preset_kernel": used,
        "case": a.case,
        "macs_per_iter": a.macs_per_iter,
        "instructions": a.instructions,
        "cycles_per_iter_mca": r(a.cycles_per_iter_mca),
        "cycles_per_iter_bound": r(a.cycles_per_iter_bound),
        "bound_limit": a.bound_limit,
        "peak_macs_per_cycle": r(a.peak_macs_per_cycle, 1),
        "fraction_of_peak": r(a.fraction_of_peak),
        "fraction_of_peak_bound": r(a.fraction_of_peak_bound),
        "model_peak_macs_per_cycle": r(a.model_peak_macs_per_cycle, 1),
        "fraction_of_model_peak": r(a.fraction_of_model_peak),
    }


def _pct(v: float | None) -> str:
    return "  n/a" if v is None else f"{100 * v:4.0f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(list_presets()))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        require_mca()
    except StaticAnalysisError as err:
        print(f"error: {err}; nothing was analysed", file=sys.stderr)
        return 2
    version = subprocess.run([require_mca(), "--version"], capture_output=True, text=True)
    mca_version = next((ln.strip() for ln in version.stdout.splitlines() if "version" in ln), "")
    machine = machine_info()
    print(f"machine: {machine}\nllvm-mca: {mca_version}", flush=True)
    records: list[dict] = []
    header = (
        f"{'preset':<16}{'core':<14}{'micro-kernel':<17}{'case':<12}{'MAC/iter':>9}"
        f"{'mca cyc':>9}{'bound':>8}  {'of peak (mca / bound / LLVM model)':<34}"
    )
    print(header + "\n" + "-" * len(header))
    for name in args.presets.split(","):
        preset = get_preset(name)
        core = core_model(str(preset.target.get("mcpu") or "generic"))
        if core is None:
            print(f"note: {name}: no core table entry for its CPU; llvm-mca only, no bound")
        elif core.llvm_model_note:
            print(f"note: {name}: {core.llvm_model_note}")
        for kernel_name, used in _kernels(preset):
            for case, m, k, n in CASES:
                a = analyse_kernel(preset, KERNELS[kernel_name], case, m, k, n)
                records.append(_record(a, used))
                bound = "-" if a.cycles_per_iter_bound is None else f"{a.cycles_per_iter_bound:.1f}"
                print(
                    f"{a.preset:<16}{a.core:<14}{a.micro_kernel:<17}{case:<12}"
                    f"{a.macs_per_iter:>9}{a.cycles_per_iter_mca:>9.2f}{bound:>8}  "
                    f"{_pct(a.fraction_of_peak)} / {_pct(a.fraction_of_peak_bound)} / "
                    f"{_pct(a.fraction_of_model_peak)}",
                    flush=True,
                )
                args.out.parent.mkdir(parents=True, exist_ok=True)
                payload = {"machine": machine, "llvm_mca": mca_version, "records": records}
                args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (static): the GEMM micro-kernels' inner loops and the row kernels on each ARM
preset's core and the host, by llvm-mca-19 and by a resource bound from published core figures.

    .venv/bin/python benchmarks/arm_static.py [--presets graviton,rpi5] [--part gemm|row|all]

What this is: a model of one inner loop's steady-state throughput (see
:mod:`intvit.analysis.inner_loop`), not a latency. No ARM machine is reachable from this
project's hosts; this is the only ARM performance evidence here. LLVM 19 has no Cortex-A76
model of its own and schedules Apple cores with its Cyclone model (3 SIMD units where M1 has
4), so each record carries llvm-mca's own peak for the same instructions beside the core's.

For every preset, each of its micro-kernels (and the kernel it replaced, as the baseline:
the broadcast ``sdot`` on dotprod presets, ``arm-neon-pair16`` on rpi4) on DeiT-tiny and
DeiT-small GEMM shapes. Prints a table and writes benchmarks/results/arm_static.json
(records: preset, core, micro_kernel, case, macs_per_iter, cycles_per_iter_mca,
cycles_per_iter_bound, peak_macs_per_cycle, fraction_of_peak, fraction_of_peak_bound,
model_peak_macs_per_cycle, fraction_of_model_peak, bound_limit, instructions, multiply,
preset_kernel), written as they are analysed; and
row_records for the row kernels (see :mod:`intvit.analysis.row_static`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from intvit.analysis.cores import core_model
from intvit.analysis.inner_loop import (
    LoopAnalysis,
    StaticAnalysisError,
    analyse_kernel,
    require_mca,
)
from intvit.analysis.row_static import RowKernelAnalysis, analyse_row_kernel
from intvit.bench.records import machine_info
from intvit.deploy.targets import get_preset, list_presets
from intvit.schedules.intrinsics import KERNELS, gemm_kernels_for
from intvit.topi.gemm_kernel import GemmKernel

RESULTS = Path(__file__).resolve().parent / "results" / "arm_static.json"

#: (case, op, row length): one row of DeiT-tiny's (D 192, 197 tokens, MLP 768) and
#: DeiT-small's (D 384, MLP 1536) row kernels.
ROW_CASES = (
    ("tiny_layernorm", "layernorm", 192),
    ("tiny_softmax", "softmax", 197),
    ("tiny_gelu", "gelu", 768),
    ("small_layernorm", "layernorm", 384),
    ("small_gelu", "gelu", 1536),
)

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


#: The kernel each preset kernel replaced, analysed beside it.
BASELINES = {"arm-sdot-lane": "arm-sdot", "arm-neon": "arm-neon-pair16"}


def _kernels(preset) -> list[tuple[GemmKernel, bool]]:
    """(kernel, whether the preset uses it) for the preset's kernels (with the tiles it gives
    them, such as the host's 4 x 4 ``avx-vnni`` and its 4 x 6 variant) and baselines."""
    used = list(gemm_kernels_for(preset.target))
    names = {k.name for k in used}
    extra = [KERNELS[b] for kernel, b in BASELINES.items() if kernel in names]
    return [(k, True) for k in used] + [(k, False) for k in extra]


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
        "multiply": a.multiply,
        "cycles_per_iter_mca": r(a.cycles_per_iter_mca),
        "cycles_per_iter_bound": r(a.cycles_per_iter_bound),
        "bound_limit": a.bound_limit,
        "peak_macs_per_cycle": r(a.peak_macs_per_cycle, 1),
        "fraction_of_peak": r(a.fraction_of_peak),
        "fraction_of_peak_bound": r(a.fraction_of_peak_bound),
        "model_peak_macs_per_cycle": r(a.model_peak_macs_per_cycle, 1),
        "fraction_of_model_peak": r(a.fraction_of_model_peak),
    }


def _row_kernels(op: str, length: int) -> list[tuple[str, object]]:
    """(name, scheduled PrimFunc) of the model's default integer kernel for ``op`` (the
    quantization config's) and its FP32 twin, on one row, scheduled as the model's are."""
    from tvm import te

    from intvit.bench.kernels import fp32_kernel, int_kernel
    from intvit.quant.config import QuantConfig
    from intvit.schedules.rowwise import schedule_rowwise

    rng = np.random.default_rng(0)
    variant = getattr(QuantConfig(), op)
    args, _, vec = int_kernel(op, (1, length), variant, rng)
    fp_args, _ = fp32_kernel(op, (1, length), False, rng)
    return [
        (f"int-{variant}", schedule_rowwise(te.create_prim_func(list(args)), vectorize=vec)),
        ("fp32", schedule_rowwise(te.create_prim_func(list(fp_args)))),
    ]


def _row_record(a: RowKernelAnalysis, op: str) -> dict:
    return {
        "preset": a.preset,
        "core": a.core,
        "op": op,
        "kernel": a.kernel,
        "case": a.case,
        "elements": a.elements,
        "cycles_mca": round(a.cycles, 1),
        "cycles_per_element_mca": round(a.cycles_per_element, 3),
        "dynamic_instructions": a.dynamic_instructions,
        "loops": sum(r.label != "<function>" for r in a.regions),
        "calls_not_modelled": a.calls,
    }


def _row_part(presets: list[str], write) -> None:
    print(
        "\nrow kernels, one row each (cycles per element by llvm-mca over the whole compute "
        "function; calls such as libm's expf are not modelled, and listed)"
    )
    header = f"{'preset':<16}{'case':<17}{'kernel':<12}{'cyc/elem':>9}{'instr':>8}  calls"
    print(header + "\n" + "-" * len(header))
    kernels = {case: _row_kernels(op, length) for case, op, length in ROW_CASES}
    for name in presets:
        preset = get_preset(name)
        for case, op, length in ROW_CASES:
            for kernel, func in kernels[case]:
                try:
                    a = analyse_row_kernel(preset, func, kernel, case, length)
                except StaticAnalysisError as err:
                    write(
                        {
                            "preset": name,
                            "op": op,
                            "kernel": kernel,
                            "case": case,
                            "error": str(err),
                        }
                    )
                    print(f"{name:<16}{case:<17}{kernel:<12}  not analysed: {err}", flush=True)
                    continue
                write(_row_record(a, op))
                calls = ", ".join(f"{k} x{v}" for k, v in a.calls.items()) or "-"
                print(
                    f"{name:<16}{case:<17}{kernel:<12}{a.cycles_per_element:>9.2f}"
                    f"{a.dynamic_instructions:>8}  {calls}",
                    flush=True,
                )


def _pct(v: float | None) -> str:
    return "  n/a" if v is None else f"{100 * v:4.0f}%"


def _gemm_part(presets: list[str], write) -> None:
    header = (
        f"{'preset':<16}{'core':<14}{'micro-kernel':<17}{'case':<12}{'MAC/iter':>9}"
        f"{'mca cyc':>9}{'bound':>8}  {'of peak (mca / bound / LLVM model)':<34}"
    )
    print(header + "\n" + "-" * len(header))
    for name in presets:
        preset = get_preset(name)
        core = core_model(str(preset.target.get("mcpu") or "generic"))
        if core is None:
            print(f"note: {name}: no core table entry for its CPU; llvm-mca only, no bound")
        elif core.llvm_model_note:
            print(f"note: {name}: {core.llvm_model_note}")
        for kernel, used in _kernels(preset):
            for case, m, k, n in CASES:
                try:
                    a = analyse_kernel(preset, kernel, case, m, k, n)
                except StaticAnalysisError as err:  # recorded and shown, never skipped silently
                    write(
                        {
                            "preset": name,
                            "micro_kernel": kernel.name,
                            "case": case,
                            "error": str(err),
                        }
                    )
                    print(f"{name:<16}{kernel.name:<17}{case:<12}  not analysed: {err}")
                    continue
                write(_record(a, used))
                bound = "-" if a.cycles_per_iter_bound is None else f"{a.cycles_per_iter_bound:.1f}"
                print(
                    f"{a.preset:<16}{a.core:<14}{a.micro_kernel:<17}{case:<12}"
                    f"{a.macs_per_iter:>9}{a.cycles_per_iter_mca:>9.2f}{bound:>8}  "
                    f"{_pct(a.fraction_of_peak)} / {_pct(a.fraction_of_peak_bound)} / "
                    f"{_pct(a.fraction_of_model_peak)}",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(list_presets()))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--part", choices=("gemm", "row", "all"), default="all")
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
    payload: dict = {"machine": machine, "llvm_mca": mca_version, "records": [], "row_records": []}

    def save(key: str, record: dict) -> None:
        payload[key].append(record)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n")

    presets = args.presets.split(",")
    if args.part in ("gemm", "all"):
        _gemm_part(presets, lambda r: save("records", r))
    if args.part in ("row", "all"):
        _row_part(presets, lambda r: save("row_records", r))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

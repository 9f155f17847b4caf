"""Static throughput of a GEMM micro-kernel's inner loop on a target core, without the device.

A packed GEMM is compiled for a preset's CPU; its innermost accumulation loop (from a label to
the backward branch that closes it, holding the kernel's multiply instruction) is cut out of
the assembly and analysed twice:

- by ``llvm-mca-19`` with the preset's ``-mcpu`` (LLVM's scheduling model of that core);
- by a resource bound from :mod:`intvit.analysis.cores`: the largest of multiply instructions
  over multiply pipes, vector instructions over vector pipes, loads over load ports and all
  instructions over the issue width.

Both are models of the loop's steady state, not latencies: they ignore cache misses, the
loops around it and the thread pool. Each is compared with the core's int8 peak (its
multiply pipes times the kernel's products per multiply-pipe instruction), and the llvm-mca
figure also with the peak of LLVM's own model, measured by analysing a register-only loop of
the same instructions (LLVM's Apple model has 3 SIMD units where M1 has 4).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import tvm

from intvit.analysis.cores import CoreModel, core_model
from intvit.deploy.targets import TargetPreset
from intvit.topi.gemm_kernel import GemmKernel

MCA_ITERATIONS = 300


class StaticAnalysisError(RuntimeError):
    """The analysis cannot run (no llvm-mca) or found nothing to analyse."""


@dataclass(frozen=True)
class LoopAnalysis:
    """One micro-kernel's inner loop on one core (cycles per loop iteration)."""

    preset: str
    core: str
    micro_kernel: str
    case: str
    instructions: int
    macs_per_iter: int
    cycles_per_iter_mca: float
    cycles_per_iter_bound: float | None  # None: the core is not in the table
    peak_macs_per_cycle: float | None
    model_peak_macs_per_cycle: float  # llvm-mca's peak for the same instructions
    bound_limit: str  # which resource sets the bound
    multiply: str = ""  # the multiply instruction the compiled loop uses (a fused form too)

    @property
    def fraction_of_peak(self) -> float | None:
        """llvm-mca's MACs per cycle over the core's peak."""
        if self.peak_macs_per_cycle is None:
            return None
        return self.macs_per_iter / self.cycles_per_iter_mca / self.peak_macs_per_cycle

    @property
    def fraction_of_model_peak(self) -> float:
        """llvm-mca's MACs per cycle over llvm-mca's own peak for these instructions."""
        return self.macs_per_iter / self.cycles_per_iter_mca / self.model_peak_macs_per_cycle

    @property
    def fraction_of_peak_bound(self) -> float | None:
        """The resource bound's MACs per cycle over the core's peak."""
        if self.cycles_per_iter_bound is None or self.peak_macs_per_cycle is None:
            return None
        return self.macs_per_iter / self.cycles_per_iter_bound / self.peak_macs_per_cycle


def require_mca() -> str:
    """The llvm-mca executable, or a StaticAnalysisError saying how to get it."""
    from intvit.analysis.llvm import find_llvm_tool

    return find_llvm_tool("llvm-mca", StaticAnalysisError)


def analysis_triple(preset: TargetPreset) -> str:
    """The triple the analysis compiles for: the preset's own, except Apple's (same
    instructions for the same ``mcpu``/``mattr``; Linux's assembly syntax for the parser)."""
    from intvit.schedules.triple import arch_of_target

    if arch_of_target(preset.target) == "arm64":
        return "aarch64-linux-gnu"
    return str(preset.target.get("mtriple", ""))


def analysis_mcpu(preset: TargetPreset) -> str:
    return str(preset.target.get("mcpu") or "generic")


def analysis_target(preset: TargetPreset) -> tvm.target.Target:
    """The preset's target, on the triple the analysis compiles for."""
    target = dict(preset.target)
    triple = analysis_triple(preset)
    if triple:
        target["mtriple"] = triple
    return tvm.target.Target(target)


def kernel_assembly(
    preset: TargetPreset, kernel: GemmKernel, m: int, k: int, n: int, x_dtype: str = "int8"
) -> str:
    """The assembly of a scheduled ``[m, k] x [n, k]^T`` packed GEMM for the preset's CPU."""
    from intvit.schedules.gemm import packed_gemm_func

    func = packed_gemm_func((m, k), x_dtype, n, kernel)
    lib = tvm.tirx.build(func, target=analysis_target(preset))
    return lib.inspect_source("asm")


_LABEL = re.compile(r"^(\.?L\w+):")
_BRANCH_TARGET = re.compile(r"^\s+(?:b(?:\.\w+)?|cbn?z|tbn?z|j\w+)\s+(?:.*,\s*)?(\.?L\w+)\s*$")


def _instruction_lines(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        text = re.split(r"\s(?://|;|# )", line, maxsplit=1)[0].rstrip()
        stripped = text.strip()
        if stripped and not stripped.startswith(".") and not _LABEL.match(stripped):
            out.append(text)
    return out


def backward_branches(lines: list[str]) -> list[tuple[int, int, str]]:
    """(label line, branch line, label) of every branch back to a label above it."""
    labels: dict[str, int] = {}
    found = []
    for i, line in enumerate(lines):
        label = _LABEL.match(line)
        if label:
            labels[label.group(1)] = i
            continue
        branch = _BRANCH_TARGET.match(line)
        if branch and branch.group(1) in labels:
            found.append((labels[branch.group(1)], i, branch.group(1)))
    return found


def innermost_loops(asm: str) -> list[list[str]]:
    """Every innermost loop of ``asm``: the instructions from a label to the backward branch
    to it, for the loops that hold no other loop."""
    lines = asm.splitlines()
    loops = [(s, e) for s, e, _ in backward_branches(lines)]
    inner = [
        (s, e)
        for s, e in loops
        if not any(s < s2 and e2 <= e for s2, e2 in loops if (s2, e2) != (s, e))
    ]
    return [_instruction_lines(lines[s + 1 : e + 1]) for s, e in inner]


def _mnemonic(line: str) -> str:
    """The instruction's mnemonic, without an encoding prefix (``{vex}``, ``{evex}``)."""
    words = line.split()
    return words[1] if words[0] in ("{vex}", "{evex}") and len(words) > 1 else words[0]


#: Instructions LLVM may emit for a kernel's multiply on cores that have them: on AVX-VNNI
#: cores (Zen 5, Alder Lake) it fuses ``vpmaddwd`` and the ``vpaddd`` accumulating it into
#: one ``vpdpwssd`` (the same 16 products a ymm instruction). ``vpmaddubsw`` saturates, so
#: it has no such fusion.
FUSED_FORMS = {"vpmaddwd": ("vpdpwssd",)}


def multiply_forms(instruction: str) -> tuple[str, ...]:
    return (instruction, *FUSED_FORMS.get(instruction, ()))


def accumulation_loop(asm: str, instruction: str) -> list[str]:
    """The innermost loop holding the most ``instruction`` (or a fused form of it, see
    :data:`FUSED_FORMS`); a clear error if none does."""
    forms = multiply_forms(instruction)
    loops = [(sum(_mnemonic(x) in forms for x in lp), lp) for lp in innermost_loops(asm)]
    count, loop = max(loops, key=lambda c: c[0], default=(0, []))
    if count == 0:
        raise StaticAnalysisError(f"no inner loop with {instruction!r} in the assembly")
    return loop


def loop_multiply(loop: list[str], instruction: str) -> tuple[str, int]:
    """The multiply form the loop uses most and how many of it it holds."""
    counts = {f: sum(_mnemonic(x) == f for x in loop) for f in multiply_forms(instruction)}
    form = max(counts, key=counts.get)
    return form, counts[form]


def mca_cycles(
    loop: list[str],
    triple: str,
    mcpu: str,
    mattr: tuple[str, ...] = (),
    iterations: int = MCA_ITERATIONS,
) -> float:
    """llvm-mca's cycles per iteration of ``loop`` on ``mcpu`` (with the ``mattr`` features,
    for a generic CPU), over ``iterations`` of it (1: one pass of straight-line code)."""
    cmd = [require_mca(), f"-mtriple={triple}", f"-mcpu={mcpu}", f"-iterations={iterations}"]
    if mattr:
        cmd.append("-mattr=" + ",".join(mattr))
    proc = subprocess.run(cmd, input="\n".join(loop) + "\n", capture_output=True, text=True)
    match = re.search(r"Total Cycles:\s+(\d+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        reason = (proc.stderr.strip().splitlines() or ["no cycle count"])[0]
        raise StaticAnalysisError(f"llvm-mca failed for -mcpu={mcpu}: {reason}")
    return int(match.group(1)) / iterations


def _is_vector(line: str) -> bool:
    return bool(re.search(r"\bv\d+\.|\bq\d+\b|%[xy]mm\d+", line))


def _is_load(line: str) -> bool:
    """An ARM ``ld*`` or an x86 (AT&T syntax) instruction with a memory source operand (one
    in parentheses before the destination, which is last)."""
    op, _, operands = line.strip().partition("\t")
    if op.startswith("ld"):
        return True
    sources = operands.rsplit(",", 1)[0] if "," in operands else ""
    return "(" in sources and op.startswith(("v", "mov"))


def resource_bound(loop: list[str], core: CoreModel) -> tuple[float, str]:
    """The loop's cycles per iteration by the core's resource table, and the resource that
    sets it."""
    mul = sum(_mnemonic(x) in core.mul_pipes for x in loop)
    mul_pipes = min(
        (core.mul_pipes[_mnemonic(x)] for x in loop if _mnemonic(x) in core.mul_pipes), default=1
    )
    vector = sum(
        _is_vector(x)
        and not (_is_load(x) and not (core.broadcast_uses_vector and _mnemonic(x) == "ld1r"))
        for x in loop
    )
    loads = sum(_is_load(x) for x in loop)
    bounds = {
        "multiply pipes": mul / mul_pipes,
        "vector pipes": vector / core.vector_pipes,
        "load ports": loads / core.load_ports,
        "issue width": len(loop) / core.issue_width,
    }
    limit = max(bounds, key=bounds.get)
    return bounds[limit], limit


#: Register-only loops of each multiply instruction with independent accumulators: the peak
#: llvm-mca's model allows for it.
_PEAK_LOOPS = {
    "sdot": "sdot v{i}.4s, v24.16b, v25.16b",
    "smmla": "smmla v{i}.4s, v24.16b, v25.16b",
    "smull": "smull v{i}.8h, v24.8b, v25.8b",
    "vpmaddwd": "vpmaddwd %ymm14, %ymm15, %ymm{i}",
    "vpdpwssd": "vpdpwssd %ymm14, %ymm15, %ymm{i}",
    "vpdpbusd": "vpdpbusd %ymm14, %ymm15, %ymm{i}",
    "vpmaddubsw": "vpmaddubsw %ymm14, %ymm15, %ymm{i}\nvpmaddwd %ymm13, %ymm{i}, %ymm{i}",
}


def model_peak(
    kernel: GemmKernel,
    triple: str,
    mcpu: str,
    mattr: tuple[str, ...] = (),
    form: str | None = None,
) -> float:
    """llvm-mca's MACs per cycle for a register-only loop of the kernel's multiply
    instructions (``form``: the fused form the compiled loop uses; 12 independent
    accumulators)."""
    template = _PEAK_LOOPS[form or kernel.instruction]
    loop = "\n".join(template.format(i=i) for i in range(12)).splitlines()
    return 12 * kernel.macs_per_instruction / mca_cycles(loop, triple, mcpu, mattr)


def core_peak(kernel: GemmKernel, core: CoreModel | None) -> float | None:
    """The core's int8 products per cycle with the kernel's multiply instruction."""
    if core is None or kernel.instruction not in core.mul_pipes:
        return None
    pipes = core.mul_pipes[kernel.instruction]
    return pipes * kernel.macs_per_instruction / kernel.mul_ops_per_instruction


def analyse_kernel(
    preset: TargetPreset, kernel: GemmKernel, case: str, m: int, k: int, n: int
) -> LoopAnalysis:
    """Compile, cut out and analyse one micro-kernel's inner loop for one GEMM shape."""
    triple = analysis_triple(preset) or "x86_64-linux-gnu"
    mcpu = analysis_mcpu(preset)
    mattr = tuple(preset.target.get("mattr", ()))
    loop = accumulation_loop(kernel_assembly(preset, kernel, m, k, n), kernel.instruction)
    form, count = loop_multiply(loop, kernel.instruction)
    core = core_model(mcpu)
    bound, limit = resource_bound(loop, core) if core else (None, "no table entry")
    return LoopAnalysis(
        preset=preset.name,
        core=mcpu,
        micro_kernel=kernel.name,
        case=case,
        instructions=len(loop),
        macs_per_iter=count * kernel.macs_per_instruction,
        cycles_per_iter_mca=mca_cycles(loop, triple, mcpu, mattr),
        cycles_per_iter_bound=bound,
        peak_macs_per_cycle=core_peak(kernel, core),
        model_peak_macs_per_cycle=model_peak(kernel, triple, mcpu, mattr, form),
        bound_limit=limit,
        multiply=form,
    )

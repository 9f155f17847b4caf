"""Static cost of a row kernel (softmax, GELU, LayerNorm) on a target core, in cycles per
element, without the device.

A row kernel is not one hot loop: it is a chain of stages over a row (reductions, a scalar
per-row chain such as a Newton square root, elementwise passes), which LLVM partly unrolls
into straight-line code. So the whole compute function is analysed, not one loop:

- the function (``main_compute_``: the kernel's body, without the FFI wrapper) is cut out of
  the assembly and split into its loops (label to backward branch) and the straight-line code
  around them;
- each loop's trip count is read from its induction: a counter compared with a constant
  (``cmp x9, #768`` after ``add x9, x9, #16``, from ``mov x9, xzr``) or counted down to zero
  (``subs x8, x8, #16`` from ``mov x8, #384``), and likewise in AT&T syntax on x86;
- every region's own instructions (a loop's without its inner loops) go through
  ``llvm-mca-19`` with the preset's ``-mcpu``: loops in steady state (cycles per iteration
  times the iterations of it and every loop around it), straight-line code once;
- the sum over the function divided by the elements it produces is the cycles per element.

What this is: a model of the instructions the kernel issues, not a latency. It assumes every
instruction in a region runs on each pass (forward branches inside a region are taken as not
skipping anything: an upper bound), that regions do not overlap one another, and that data is
in L1. Calls (``expf``/``erff`` from libm in the default FP32 lowering, or TVM's workspace
allocator) are not modelled; each record lists them, with how often each runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import tvm

from intvit.deploy.inner_loop import (
    _BRANCH_TARGET,
    _LABEL,
    StaticAnalysisError,
    _instruction_lines,
    analysis_mcpu,
    analysis_target,
    analysis_triple,
    backward_branches,
    mca_cycles,
)
from intvit.deploy.targets import TargetPreset

COMPUTE_FUNCTION = "main_compute_"
_MCA_LOOP_ITERATIONS = 200


@dataclass(frozen=True)
class Region:
    """A loop (``trips`` its iterations per entry) or the straight-line code of the function
    (``trips`` 1), with the instructions it runs itself (not those of its inner loops)."""

    label: str
    depth: int
    trips: int | None  # None: the induction was not understood
    executions: int | None  # trips times the trips of every loop around it
    instructions: list[str]
    cycles_per_pass: float = 0.0


@dataclass
class RowKernelAnalysis:
    """One row kernel on one core."""

    preset: str
    core: str
    kernel: str
    case: str
    elements: int
    regions: list[Region]
    calls: dict[str, int] = field(default_factory=dict)  # callee: times it runs

    @property
    def unresolved(self) -> list[str]:
        """Loops whose trip count could not be read (their cost is left out of the total)."""
        return [r.label for r in self.regions if r.executions is None]

    @property
    def cycles(self) -> float:
        return sum(r.cycles_per_pass * r.executions for r in self.regions if r.executions)

    @property
    def cycles_per_element(self) -> float:
        return self.cycles / self.elements

    @property
    def dynamic_instructions(self) -> int:
        return sum(len(r.instructions) * r.executions for r in self.regions if r.executions)


def compute_function(asm: str, name: str = COMPUTE_FUNCTION) -> list[str]:
    """The lines of function ``name`` in ``asm`` (from its label to its ``.Lfunc_end``)."""
    lines = asm.splitlines()
    try:
        start = lines.index(f"{name}:")
    except ValueError:
        raise StaticAnalysisError(f"no function {name!r} in the assembly") from None
    for end in range(start + 1, len(lines)):
        if lines[end].startswith(".Lfunc_end"):
            return lines[start + 1 : end]
    raise StaticAnalysisError(f"function {name!r} has no end in the assembly")


def _leaves(line: str, lines: list[str], start: int, end: int) -> bool:
    """Whether ``line`` returns or jumps unconditionally out of lines ``start..end``."""
    op = _parts(line)[0]
    if op in ("ret", "retq"):
        return True
    target = _BRANCH_TARGET.match(line)
    if op not in ("b", "jmp") or target is None:
        return False
    return not any(x.startswith(target.group(1) + ":") for x in lines[start : end + 1])


def _loops(lines: list[str]) -> list[tuple[int, int, str]]:
    """(label line, branch line, label) of every loop."""
    # a branch back to a shared epilogue (which returns), or into a block that jumps on out
    # of the range (block layout, not a loop), closes no loop
    found = [
        (s, e, name)
        for s, e, name in backward_branches(lines)
        if not any(_leaves(x, lines, s, e) for x in lines[s:e])
    ]
    # one region per label: several branches back to it close the same loop (the last one)
    last: dict[str, tuple[int, int, str]] = {}
    for s, e, name in found:
        if name not in last or e > last[name][1]:
            last[name] = (s, e, name)
    return sorted(last.values())


def _parts(line: str) -> tuple[str, list[str]]:
    op, _, operands = line.strip().partition("\t")
    return op, [x.strip() for x in re.split(r",\s*(?![^{\[]*[}\]])", operands) if x.strip()]


def _reg_id(reg: str) -> str:
    """One name for a register's views: ``x9``/``w9`` -> ``9``; ``%rax``/``%eax`` -> ``ax``;
    ``%r8``/``%r8d`` -> ``r8``."""
    reg = reg.strip().lstrip("%")
    arm = re.fullmatch(r"[xw](\d+)", reg)
    if arm:
        return arm.group(1)
    if reg in ("xzr", "wzr"):
        return "zr"
    num = re.fullmatch(r"(r\d+)[dwb]?", reg)
    if num:
        return num.group(1)
    legacy = re.fullmatch(r"[re]?([a-d]x|si|di|bp|sp)", reg)
    return legacy.group(1) if legacy else reg


def _imm(text: str) -> int | None:
    m = re.fullmatch(r"[#$]?(-?(?:0x[0-9a-fA-F]+|\d+))", text.strip())
    return int(m.group(1), 0) if m else None


#: A resolved loop's counter on exit: (label line, branch line) -> (register, value).
Exits = dict[tuple[int, int], tuple[str, int]]


def _initial_value(lines: list[str], before: int, reg: str, exits: Exits) -> int | None:
    """The constant last written to ``reg`` before line ``before`` (``mov``/``movl``/``xor``,
    or an earlier loop's counter, whose exit value is known), or None if the last write is
    anything else."""
    for index in range(before - 1, -1, -1):
        done = [v for (s, e), (r, v) in exits.items() if s < index <= e and r == reg]
        if done:
            return done[0]
        found = _instruction_lines([lines[index]])
        if not found:
            continue
        op, ops = _parts(found[0])
        if not ops or op.startswith(("push", "pop")):  # saves and restores on return paths
            continue
        if op.startswith("xor") and len(ops) == 2 and _reg_id(ops[0]) == _reg_id(ops[1]) == reg:
            return 0
        is_x86 = ops[-1].startswith("%")
        dest = ops[-1] if is_x86 else ops[0]
        if _reg_id(dest) != reg:
            continue
        if op.startswith("mov") and len(ops) == 2:
            src = ops[0] if is_x86 else ops[1]
            if _reg_id(src) == "zr":
                return 0
            return _imm(src)
        return None
    return None


def _step(body: list[str], reg: str) -> int | None:
    """The constant the loop adds to ``reg`` once per iteration (negative: subtracts)."""
    steps = []
    for line in body:
        op, ops = _parts(line)
        if len(ops) < 2:
            if op.startswith(("inc", "dec")) and ops and _reg_id(ops[0]) == reg:
                steps.append(1 if op.startswith("inc") else -1)
            continue
        is_x86 = ops[-1].startswith("%")
        if is_x86 and len(ops) == 2 and _reg_id(ops[1]) == reg and op[:3] in ("add", "sub"):
            v = _imm(ops[0])
            if v is None:
                return None
            steps.append(v if op.startswith("add") else -v)
        elif not is_x86 and len(ops) == 3 and _reg_id(ops[0]) == _reg_id(ops[1]) == reg:
            v = _imm(ops[2])
            if v is None or op not in ("add", "adds", "sub", "subs"):
                return None
            steps.append(v if op.startswith("add") else -v)
    return steps[0] if len(steps) == 1 else None


_ARM_FLAGS = ("cmp", "cmn", "subs", "adds")
_X86_FLAGS = ("cmp", "add", "sub", "inc", "dec")


def _flag_setter(body: list[str]) -> tuple[str, list[str]]:
    """The last instruction before the branch that sets the flags it tests (ARM: the last
    ``cmp``/``subs``/...; x86: the last integer ALU instruction, as LLVM puts it next to the
    branch for macro-fusion)."""
    for line in reversed(body):
        op, ops = _parts(line)
        x86 = bool(ops) and ops[-1].startswith("%")
        if (not x86 and op in _ARM_FLAGS) or (x86 and op.startswith(_X86_FLAGS)):
            return op, ops
        if x86 and not op.startswith("v"):
            return op, ops
    return "", []


def _trips(lines: list[str], start: int, end: int, exits: Exits) -> int | None:
    """Iterations of the loop from label line ``start`` to branch line ``end``, read from its
    induction, or None."""
    body = _instruction_lines(lines[start + 1 : end + 1])
    if len(body) < 2:
        return None
    at = len(body) - 1
    exit_test = _parts(body[at])[0] in ("b", "jmp")
    if exit_test:  # closed by a jump back: the loop's test is an exit in its middle
        labels = {m.group(1) for x in lines[start : end + 1] if (m := _LABEL.match(x.strip()))}
        leaving = [
            i
            for i, x in enumerate(body[:-1])
            if (m := _BRANCH_TARGET.match(x)) and m.group(1) not in labels
        ]
        if not leaving:
            return None
        at = leaving[-1]
    branch, _ = _parts(body[at])
    cond = branch.split(".")[-1] if "." in branch else branch[1:]
    op, ops = _flag_setter(body[:at])
    if branch in ("cbnz", "cbz"):
        reg = _reg_id(_parts(body[at])[1][0])
        bound, counter = 0, reg
    elif op in ("cmp",) and len(ops) == 2:  # ARM: cmp counter, bound
        counter, bound = _reg_id(ops[0]), _imm(ops[1])
        if bound is None:
            bound = _initial_value(lines, start, _reg_id(ops[1]), exits)
    elif op.startswith("cmp") and len(ops) == 2:  # x86: cmp bound, counter
        counter, bound = _reg_id(ops[1]), _imm(ops[0])
        if bound is None:
            bound = _initial_value(lines, start, _reg_id(ops[0]), exits)
    elif op in ("subs", "adds") or op[:3] in ("sub", "add", "dec", "inc"):
        counter = _reg_id(ops[0] if not ops[-1].startswith("%") else ops[-1])
        bound = 0
    else:
        return None
    step = _step(body, counter)
    init = _initial_value(lines, start, counter, exits)
    if bound is None or step is None or init is None or step == 0:
        return None
    trips = _iterations(bound - init, step, cond, exit_test)
    if trips is not None:
        exits[(start, end)] = (counter, init + step * (trips - 1 if exit_test else trips))
    return trips


def _iterations(span: int, step: int, cond: str, exit_test: bool) -> int | None:
    """Iterations of a loop whose counter moves ``span`` by ``step`` a pass, tested by
    ``cond`` at its end (or, ``exit_test``, by an exit in its middle)."""
    if exit_test:  # passes through the test, the last one leaving (an upper bound)
        if cond in ("e", "eq") and span % step == 0 and span // step >= 0:
            return span // step + 1
        return None
    if span % step == 0 and span // step > 0 and cond in ("ne", "nz", "cbnz"):
        return span // step
    if step > 0 and cond in ("lo", "lt", "b", "l", "cc") and span > 0:
        return -(-span // step)
    if step > 0 and cond in ("ls", "le", "be") and span >= 0:
        return span // step + 1
    return None


_CALL = re.compile(r"^\s+(?:bl|blr|callq?)\s+(\S+)")
_GOT = re.compile(r"(?::got:|:got_lo12:)(\w+)|(\w+)@GOTPCREL")


def _callee(instructions: list[str], at: int) -> str:
    """The function the call at ``instructions[at]`` reaches: its symbol, or for an indirect
    call the last symbol loaded from the GOT before it."""
    target = _CALL.match(instructions[at]).group(1)
    if not target.startswith(("x", "*", "%")):
        return target
    for line in reversed(instructions[:at]):
        got = _GOT.search(line)
        if got:
            return got.group(1) or got.group(2)
    return "indirect"


def regions(lines: list[str]) -> list[Region]:
    """The function's straight-line code and its loops, each with its own instructions and
    how often it runs."""
    loops = _loops(lines)
    exits: Exits = {}
    trips = {s: _trips(lines, s, e, exits) for s, e, _ in loops}

    def parents(i: int) -> list[tuple[int, int, str]]:
        return [lp for lp in loops if lp[0] < i <= lp[1]]

    out = []
    owners = [(0, len(lines) - 1, "<function>"), *loops]
    for s, e, name in owners:
        is_loop = name != "<function>"
        inner = [lp for lp in loops if s < lp[0] and lp[1] <= e and lp != (s, e, name)]
        own = [
            lines[i]
            for i in range(s + (1 if is_loop else 0), e + 1)
            if not any(a < i <= b for a, b, _ in inner)
        ]
        around = parents(s + 1) if is_loop else []
        runs: int | None = 1
        for ps, _, _ in around:
            t = trips[ps]
            runs = None if t is None or runs is None else runs * t
        depth = len(around)
        out.append(Region(name, depth, trips[s] if is_loop else 1, runs, _instruction_lines(own)))
    return out


def _mca_cycles(
    instructions: list[str], triple: str, mcpu: str, mattr: tuple[str, ...], loop: bool
) -> float:
    """llvm-mca's cycles for one pass: steady state for a loop, one iteration otherwise."""
    body = [x for x in instructions if not _CALL.match(x)]
    if not body:
        return 0.0
    return mca_cycles(body, triple, mcpu, mattr, _MCA_LOOP_ITERATIONS if loop else 1)


def row_kernel_assembly(preset: TargetPreset, func: tvm.tirx.PrimFunc) -> str:
    """The assembly of a scheduled row-kernel PrimFunc for the preset's CPU."""
    lib = tvm.compile(tvm.IRModule({"main": func}), target=analysis_target(preset))
    return lib.mod.inspect_source("asm")


def analyse_row_kernel(
    preset: TargetPreset, func: tvm.tirx.PrimFunc, kernel: str, case: str, elements: int
) -> RowKernelAnalysis:
    """Compile ``func`` (scheduled) for the preset and model its cycles for ``elements``
    outputs; a clear error if the compute function or any of its loops is not understood."""
    triple = analysis_triple(preset) or "x86_64-linux-gnu"
    mcpu = analysis_mcpu(preset)
    mattr = tuple(preset.target.get("mattr", ()))
    lines = compute_function(row_kernel_assembly(preset, func))
    found = regions(lines)
    priced = []
    calls: dict[str, int] = {}
    for r in found:
        cycles = _mca_cycles(r.instructions, triple, mcpu, mattr, loop=r.label != "<function>")
        priced.append(replace(r, cycles_per_pass=cycles))
        for at, line in enumerate(r.instructions):
            if _CALL.match(line) and r.executions:
                name = _callee(r.instructions, at)
                calls[name] = calls.get(name, 0) + r.executions
    analysis = RowKernelAnalysis(preset.name, mcpu, kernel, case, elements, priced, calls)
    if analysis.unresolved:
        raise StaticAnalysisError(
            f"{kernel} on {preset.name}: trip count not understood for loops "
            f"{', '.join(analysis.unresolved)}"
        )
    return analysis

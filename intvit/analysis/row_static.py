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

from intvit.analysis.asm_values import (
    CONDITION_NAMES,
    CONDITIONS,
    Function,
    branch_taken,
    destination,
    immediate,
    is_x86,
    parts,
    reg_id,
)
from intvit.analysis.cores import core_model
from intvit.analysis.inner_loop import (
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
    op = parts(line)[0]
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


_FLIPPED = {"lo": "hi", "hi": "lo", "ls": "hs", "hs": "ls", "lt": "gt", "gt": "lt"}
_FLIPPED.update({"le": "ge", "ge": "le", "eq": "eq", "ne": "ne"})
_NEGATED = {"lo": "hs", "hs": "lo", "hi": "ls", "ls": "hi", "lt": "ge", "ge": "lt"}
_NEGATED.update({"gt": "le", "le": "gt", "eq": "ne", "ne": "eq"})
#: SVE ``while*`` instructions: the relation ``counter ? bound`` that makes the first (and,
#: for these, any) predicate element active.
_WHILE = {"whilelo": "lo", "whilels": "ls", "whilelt": "lt", "whilele": "le"}
#: After a ``while*``: branch conditions taken when the first element is active / is not.
_SVE_ACTIVE = ("mi", "first", "ne", "any")
_SVE_INACTIVE = ("pl", "nfrst", "eq", "none")
_MAX_TRIPS = 1 << 20


@dataclass(frozen=True)
class _Test:
    """A loop's branch: taken when ``counter relation bound`` holds, compared at body line
    ``at``."""

    counter: str
    bound: int
    relation: str
    at: int


def _body_writes(body: list[str], reg: str) -> list[int]:
    return [i for i, line in enumerate(body) if destination(*parts(line)) == reg]


def _invariant(f: Function, start: int, body: list[str], text: str) -> int | None:
    """An operand's value in a loop that does not write it: an immediate, or the register's
    value on entry."""
    imm = immediate(text)
    if imm is not None:
        return imm
    reg = reg_id(text)
    return None if _body_writes(body, reg) else f.value(start, reg)


def _step(f: Function, start: int, body: list[str], reg: str) -> tuple[int, int] | None:
    """What the loop adds to ``reg`` once per iteration (negative: subtracts), and the body
    line that does it; None unless exactly one instruction writes it, by a constant."""
    writes = _body_writes(body, reg)
    if len(writes) != 1:
        return None
    at = writes[0]
    op, ops = parts(body[at])
    step: int | None = None
    if is_x86(ops):
        if op.startswith(("inc", "dec")) and len(ops) == 1:
            step = 1 if op.startswith("inc") else -1
        elif op[:3] in ("add", "sub") and len(ops) == 2:
            v = _invariant(f, start, body, ops[0])
            step = None if v is None else (v if op.startswith("add") else -v)
    elif op in ("add", "adds", "sub", "subs") and len(ops) == 3 and reg_id(ops[1]) == reg:
        v = _invariant(f, start, body, ops[2])
        step = None if v is None else (v if op.startswith("add") else -v)
    elif op[:3] in ("inc", "dec") and op[3:] in ("b", "h", "w", "d"):
        count = f.element_count(op[3:], ops)
        step = None if count is None else (count if op.startswith("inc") else -count)
    elif op == "addvl" and len(ops) == 3 and reg_id(ops[1]) == reg and f.vector_bytes:
        k = immediate(ops[2])
        step = None if k is None else k * f.vector_bytes
    return None if step is None else (step, at)


def _test(f: Function, start: int, body: list[str], at: int) -> _Test | None:
    """The comparison the branch at body line ``at`` tests, as ``counter ? bound``."""
    branch, branch_ops = parts(body[at])
    if branch in ("cbnz", "cbz"):
        return _Test(reg_id(branch_ops[0]), 0, "ne" if branch == "cbnz" else "eq", at)
    cond = branch.split(".")[-1] if "." in branch else branch[1:]
    for i in range(at - 1, -1, -1):
        op, ops = parts(body[i])
        if op in _WHILE and len(ops) == 3:
            if cond not in _SVE_ACTIVE + _SVE_INACTIVE:
                return None
            rel = _WHILE[op] if cond in _SVE_ACTIVE else _NEGATED[_WHILE[op]]
            return _counter_test(f, start, body, ops[1], ops[2], rel, i)
        rel = CONDITION_NAMES.get(cond)
        x86 = is_x86(ops)
        if not x86 and op == "cmp" and len(ops) == 2:
            return None if rel is None else _counter_test(f, start, body, ops[0], ops[1], rel, i)
        if not x86 and op in ("subs", "adds") and len(ops) == 3:
            return None if rel is None else _counter_test(f, start, body, ops[0], "#0", rel, i)
        if not x86 and op in ("cmn", "tst", "ands", "ccmp", "fcmp"):
            return None
        if x86 and op.startswith("cmp") and len(ops) == 2:  # AT&T: flags of ops[1] - ops[0]
            return None if rel is None else _counter_test(f, start, body, ops[1], ops[0], rel, i)
        if x86 and op.startswith("test") and len(ops) == 2 and ops[0] == ops[1]:
            return None if rel is None else _counter_test(f, start, body, ops[0], "$0", rel, i)
        if x86 and op[:3] in ("add", "sub", "inc", "dec") and ops[-1].startswith("%"):
            return None if rel is None else _counter_test(f, start, body, ops[-1], "$0", rel, i)
        if x86 and not op.startswith("v"):  # another integer instruction set the flags
            return None
    return None


def _counter_test(
    f: Function, start: int, body: list[str], x: str, y: str, rel: str, at: int
) -> _Test | None:
    """``x rel y``, with the operand the loop steps as the counter (the relation flipped
    when it is ``y``) and the other, constant in the loop, as the bound."""
    for counter, other, relation in ((x, y, rel), (y, x, _FLIPPED[rel])):
        if immediate(counter) is not None or _step(f, start, body, reg_id(counter)) is None:
            continue
        bound = _invariant(f, start, body, other)
        return None if bound is None else _Test(reg_id(counter), bound, relation, at)
    return None


def _trips(f: Function, start: int, end: int) -> int | None:
    """Iterations of the loop from label line ``start`` to branch line ``end``, read from its
    induction by stepping the counter from its value on entry (for a loop closed by a jump
    back, the passes through its exit test), or None. A loop whose counter starts at its
    bound with a ``!=`` test is guarded by its caller and runs 0 times (LLVM's remainder
    loops when nothing remains)."""
    body = _instruction_lines(f.lines[start + 1 : end + 1])
    if len(body) < 2:
        return None
    at = len(body) - 1
    exit_test = parts(body[at])[0] in ("b", "jmp")
    if exit_test:  # closed by a jump back: the loop's test is an exit in its middle
        labels = {m.group(1) for x in f.lines[start : end + 1] if (m := _LABEL.match(x.strip()))}
        leaving = [
            i
            for i, x in enumerate(body[:-1])
            if (m := _BRANCH_TARGET.match(x)) and m.group(1) not in labels
        ]
        if not leaving:
            return None
        at = leaving[-1]
    test = _test(f, start, body, at)
    if test is None:
        return None
    step_at = _step(f, start, body, test.counter)
    init = f.value(start, test.counter)
    if step_at is None or init is None or step_at[0] == 0:
        return None
    step, where = step_at
    relation = CONDITIONS[test.relation]

    def taken(value: int) -> bool:
        return relation(value, test.bound)

    after = where <= test.at  # the comparison sees the stepped counter
    if not exit_test and test.relation == "ne" and after and init == test.bound:
        f.exits[(start, end)] = (test.counter, init)
        return 0
    counter = init
    for trips in range(1, _MAX_TRIPS):
        tested = counter + step if after else counter
        if exit_test and taken(tested):  # leaves in the middle of this pass
            f.exits[(start, end)] = (test.counter, tested)
            return trips
        counter += step
        if not exit_test and not taken(tested):
            f.exits[(start, end)] = (test.counter, counter)
            return trips
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


def _reachable(f: Function) -> set[int]:
    """The lines a path from the entry reaches, where every conditional branch outside the
    loops whose comparison is of constants goes its one way (:func:`branch_taken`)."""
    labels = {m.group(1): i for i, x in enumerate(f.lines) if (m := _LABEL.match(x.strip()))}
    seen: set[int] = set()
    todo = [0]
    while todo:
        i = todo.pop()
        while 0 <= i < len(f.lines) and i not in seen:
            seen.add(i)
            found = _instruction_lines([f.lines[i]])
            if not found:
                i += 1
                continue
            op, ops = parts(found[0])
            if op in ("ret", "retq"):
                break
            target = _BRANCH_TARGET.match(found[0])
            if target is None or target.group(1) not in labels:
                i += 1
                continue
            to = labels[target.group(1)]
            if op in ("b", "jmp"):
                i = to
                continue
            cond = op.split(".")[-1] if "." in op else op[1:]
            taken = branch_taken(f, i, op, ops, cond)
            if taken is not False:
                todo.append(to)
            if taken:
                break
            i += 1
    return seen


def regions(lines: list[str], vector_bytes: int = 0) -> list[Region]:
    """The function's straight-line code and its loops, each with its own instructions and
    how often it runs (``vector_bytes``: the core's SVE vector length, which the trip counts
    of LLVM's scalable-vector loops depend on; 0 where it has none)."""
    loops = _loops(lines)
    f = Function(lines, [(s, e) for s, e, _ in loops], vector_bytes)
    for _ in range(4):  # branch decisions read values, which skip unreachable writes
        unreachable = frozenset(range(len(lines))) - _reachable(f)
        if unreachable == f.unreachable:
            break
        f.unreachable = unreachable
    trips = {s: (0 if s in f.unreachable else _trips(f, s, e)) for s, e, _ in loops}

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
            if not any(a < i <= b for a, b, _ in inner) and i not in f.unreachable
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
    core = core_model(mcpu)
    found = regions(lines, core.sve_bits // 8 if core else 0)
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

"""Constant values of general-purpose registers in a compiled function's assembly, for reading
loop trip counts without running the code (:mod:`intvit.analysis.row_static`).

A value is read backwards from a line: the last instruction before it that writes the
register is evaluated, its operands in turn at that instruction, down to immediates. What
can be evaluated is a small table of integer instructions (moves, ``movk``, add/sub, logic,
shifts, ``csel`` on a comparison of known values) in AArch64 and AT&T x86 syntax, and the
SVE ones whose value is a multiple of the vector length (``rdvl``, ``cntb/h/w/d``,
``incb/h/w/d``, ``decb/h/w/d``, ``addvl``), given the core's vector length.

LLVM vectorizes row kernels for SVE with scalable vectors: a loop's step is ``cnth`` (the
halfwords in a vector) and its bound ``(-cnth) & 191``. Those are constants once the vector
length is known (Neoverse V1: 256 bits, so ``cnth`` is 16 and the bound 176).

The reading assumes straight-line flow between the writer and the reader (the last write in
the text is the one that reaches it), as a compiler's block layout gives for the set-up code
of a loop. A write inside a loop that does not contain the reader is evaluated only if it is
a constant (a move of an immediate, a vector-length count); anything else gives None.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from intvit.analysis.inner_loop import _instruction_lines

_MAX_DEPTH = 48
_BLOCK_LABEL = re.compile(r"^\.LBB\w+:")
_MASK64 = (1 << 64) - 1
#: SVE element-count instructions by suffix: bytes per element.
_SVE_BYTES = {"b": 1, "h": 2, "w": 4, "d": 8}
#: ARM instructions whose first operand is read, not written.
_ARM_NO_DEST = ("st", "cmp", "cmn", "tst", "prfm", "b", "cb", "tb", "fcmp", "ccmp", "ret")
#: x86 instructions that write no register operand.
_X86_NO_DEST = ("cmp", "test", "j", "push", "call", "ret", "vcmp", "ucomi", "comi")


def parts(line: str) -> tuple[str, list[str]]:
    """Mnemonic and operands of one assembly line (commas inside ``[]``/``{}`` kept)."""
    op, _, operands = line.strip().partition("\t")
    return op, [x.strip() for x in re.split(r",\s*(?![^{\[]*[}\]])", operands) if x.strip()]


def reg_id(reg: str) -> str:
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


def immediate(text: str) -> int | None:
    """``#16``, ``$-4``, ``#0x300`` -> the integer, else None."""
    m = re.fullmatch(r"[#$]?(-?(?:0x[0-9a-fA-F]+|\d+))", text.strip())
    return int(m.group(1), 0) if m else None


def is_x86(ops: list[str]) -> bool:
    return bool(ops) and ops[-1].startswith(("%", "$"))


def destination(op: str, ops: list[str]) -> str | None:
    """The general-purpose register an instruction writes (its id), or None."""
    if not ops:
        return None
    if is_x86(ops):
        if op.startswith(_X86_NO_DEST) or not ops[-1].startswith("%"):
            return None
        return reg_id(ops[-1])
    if op.startswith(_ARM_NO_DEST) or op.startswith("while"):
        return None
    return reg_id(ops[0])


@dataclass
class Function:
    """A function's instruction lines (with labels), the loops in it (label line, branch
    line) and what is known when it runs: the SVE vector length in bytes (0: none or
    unknown) and the counters of loops already resolved, with their value on exit."""

    lines: list[str]
    loops: list[tuple[int, int]]
    vector_bytes: int = 0
    exits: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)
    #: Lines no path from the entry reaches (their writes are not read).
    unreachable: frozenset[int] = frozenset()

    def value(self, before: int, reg: str, depth: int = 0) -> int | None:
        """The value of register ``reg`` (an id from :func:`reg_id`) on reaching line
        ``before``, or None if it is not a constant this reading can evaluate."""
        if reg == "zr":
            return 0
        if depth > _MAX_DEPTH:
            return None
        for index in range(before - 1, -1, -1):
            if index in self.unreachable:
                continue
            done = [v for (s, e), (r, v) in self.exits.items() if s < index <= e and r == reg]
            if done:
                return done[0]
            found = _instruction_lines([self.lines[index]])
            if not found:
                continue
            op, ops = parts(found[0])
            if op.startswith(("push", "pop")):  # saves and restores on return paths
                continue
            if destination(op, ops) != reg:
                continue
            in_other_loop = any(s < index <= e and not s < before <= e for s, e in self.loops)
            handler = (_X86 if is_x86(ops) else _ARM).get(op)
            if handler is None or (in_other_loop and not _constant(op, ops)):
                return None
            return handler(self, index, ops, depth + 1)
        return None

    def operand(self, at: int, text: str, depth: int) -> int | None:
        """An operand's value at line ``at``: an immediate or a register's value."""
        imm = immediate(text)
        if imm is not None:
            return imm
        if re.fullmatch(r"%?[a-z]+\d*[a-z]?", text.strip()):
            return self.value(at, reg_id(text), depth)
        return None

    def element_count(self, suffix: str, ops: list[str]) -> int | None:
        """``cnt{suffix}``'s value: elements per vector (with its ``vlN`` pattern and ``mul
        #k``), or None without a known vector length."""
        if not self.vector_bytes:
            return None
        count = self.vector_bytes // _SVE_BYTES[suffix]
        pattern = ops[1] if len(ops) > 1 and not ops[1].startswith("mul") else "all"
        mul = next((immediate(x.split()[-1]) for x in ops[1:] if x.startswith("mul")), 1)
        if pattern.startswith("vl") and pattern[2:].isdigit():
            count = int(pattern[2:]) if int(pattern[2:]) <= count else 0
        elif pattern not in ("all", "pow2"):
            return None
        return count * mul


Handler = Callable[[Function, int, list[str], int], int | None]


def _binary(fn: Callable[[int, int], int]) -> Handler:
    """``op d, a, b[, lsl #k]`` (ARM)."""

    def handler(f: Function, at: int, ops: list[str], depth: int) -> int | None:
        if len(ops) < 3:
            return None
        a, b = f.operand(at, ops[1], depth), f.operand(at, ops[2], depth)
        if a is None or b is None:
            return None
        if len(ops) > 3:
            shift = re.fullmatch(r"(lsl|lsr|asr)\s+#(\d+)", ops[3])
            if shift is None:
                return None
            b = b << int(shift.group(2)) if shift.group(1) == "lsl" else b >> int(shift.group(2))
        return fn(a, b)

    return handler


def _mov(f: Function, at: int, ops: list[str], depth: int) -> int | None:
    return f.operand(at, ops[1], depth) if len(ops) == 2 else None


def _movk(f: Function, at: int, ops: list[str], depth: int) -> int | None:
    prev, imm = f.value(at, reg_id(ops[0]), depth), immediate(ops[1])
    shift = int(ops[2].split("#")[-1]) if len(ops) > 2 else 0
    if prev is None or imm is None:
        return None
    return (prev & ~(0xFFFF << shift) & _MASK64) | (imm << shift)


def _neg(f: Function, at: int, ops: list[str], depth: int) -> int | None:
    v = f.operand(at, ops[1], depth)
    if v is None or len(ops) > 3:
        return None
    if len(ops) == 3:
        shift = re.fullmatch(r"lsl\s+#(\d+)", ops[2])
        if shift is None:
            return None
        v <<= int(shift.group(1))
    return -v


CONDITIONS: dict[str, Callable[[int, int], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lo": lambda a, b: a & _MASK64 < b & _MASK64,
    "hs": lambda a, b: a & _MASK64 >= b & _MASK64,
    "hi": lambda a, b: a & _MASK64 > b & _MASK64,
    "ls": lambda a, b: a & _MASK64 <= b & _MASK64,
    "lt": lambda a, b: a < b,
    "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b,
}

#: Branch conditions (ARM and x86 spellings) -> the ARM name of the relation ``x ? y`` under
#: which a comparison ``x - y`` takes the branch.
CONDITION_NAMES = {
    **{c: c for c in ("eq", "ne", "lo", "hs", "hi", "ls", "lt", "ge", "gt", "le")},
    **{"e": "eq", "z": "eq", "nz": "ne", "b": "lo", "c": "lo", "nae": "lo", "cc": "lo"},
    **{"ae": "hs", "nb": "hs", "nc": "hs", "cs": "hs", "a": "hi", "nbe": "hi"},
    **{"be": "ls", "na": "ls", "l": "lt", "nge": "lt", "nl": "ge", "g": "gt", "nle": "gt"},
    "ng": "le",
}


def _csel(f: Function, at: int, ops: list[str], depth: int) -> int | None:
    """``csel d, a, b, cond`` after ``cmp x, y`` of known values."""
    test = CONDITIONS.get(ops[3]) if len(ops) == 4 else None
    compared = comparison_before(f, at, depth) if test is not None else None
    if compared is None:
        return None
    return f.operand(at, ops[1] if test(*compared) else ops[2], depth)


def comparison_before(
    f: Function, at: int, depth: int = 0, joins: bool = False
) -> tuple[int, int] | None:
    """The values ``(x, y)`` of the comparison whose flags line ``at`` reads (``cmp x, y``,
    AT&T ``cmp y, x``), scanning back over instructions that set no flags; None if another
    flag setter, a branch, or (with ``joins``) a block label where another path may join
    comes first, or if either value is unknown."""
    for index in range(at - 1, -1, -1):
        if index in f.unreachable:
            continue
        found = _instruction_lines([f.lines[index]])
        if not found:
            if joins and _BLOCK_LABEL.match(f.lines[index].strip()):
                return None
            continue
        op, cmp_ops = parts(found[0])
        if is_x86(cmp_ops):
            if not (op.startswith("cmp") and len(cmp_ops) == 2):
                return None  # x86: most integer instructions set flags
            x, y = cmp_ops[1], cmp_ops[0]
        elif op == "cmp" and len(cmp_ops) == 2:
            x, y = cmp_ops
        elif op in _ARM_FLAG_SETTERS or op.startswith(("b.", "cb", "tb", "ret", "while")):
            return None
        elif op == "b":
            return None
        else:
            continue
        vx, vy = f.operand(index, x, depth), f.operand(index, y, depth)
        return None if vx is None or vy is None else (vx, vy)
    return None


_ARM_FLAG_SETTERS = ("cmn", "subs", "adds", "tst", "ands", "fcmp", "ccmp", "bics", "negs")


def _sve_count(suffix: str, sign: int, accumulate: bool) -> Handler:
    """``cnt*`` (a count), ``inc*``/``dec*`` (the register plus or minus one)."""

    def handler(f: Function, at: int, ops: list[str], depth: int) -> int | None:
        count = f.element_count(suffix, ops)
        if count is None:
            return None
        if not accumulate:
            return count
        prev = f.value(at, reg_id(ops[0]), depth)
        return None if prev is None else prev + sign * count

    return handler


def _rdvl(f: Function, at: int, ops: list[str], depth: int) -> int | None:
    k = immediate(ops[1]) if len(ops) == 2 else None
    return None if k is None or not f.vector_bytes else k * f.vector_bytes


def _addvl(f: Function, at: int, ops: list[str], depth: int) -> int | None:
    base = f.operand(at, ops[1], depth) if len(ops) == 3 else None
    k = immediate(ops[2]) if len(ops) == 3 else None
    if base is None or k is None or not f.vector_bytes:
        return None
    return base + k * f.vector_bytes


_ARM: dict[str, Handler] = {
    "mov": _mov,
    "movz": _mov,
    "movk": _movk,
    "neg": _neg,
    "add": _binary(lambda a, b: a + b),
    "adds": _binary(lambda a, b: a + b),
    "sub": _binary(lambda a, b: a - b),
    "subs": _binary(lambda a, b: a - b),
    "and": _binary(lambda a, b: a & b),
    "orr": _binary(lambda a, b: a | b),
    "eor": _binary(lambda a, b: a ^ b),
    "lsl": _binary(lambda a, b: a << b),
    "lsr": _binary(lambda a, b: (a & _MASK64) >> b),
    "asr": _binary(lambda a, b: a >> b),
    "mul": _binary(lambda a, b: a * b),
    "csel": _csel,
    "rdvl": _rdvl,
    "addvl": _addvl,
    **{f"cnt{s}": _sve_count(s, 0, False) for s in _SVE_BYTES},
    **{f"inc{s}": _sve_count(s, 1, True) for s in _SVE_BYTES},
    **{f"dec{s}": _sve_count(s, -1, True) for s in _SVE_BYTES},
}


def _x86_mov(f: Function, at: int, ops: list[str], depth: int) -> int | None:
    return f.operand(at, ops[0], depth) if len(ops) == 2 else None


def _x86_xor(f: Function, at: int, ops: list[str], depth: int) -> int | None:
    return 0 if len(ops) == 2 and reg_id(ops[0]) == reg_id(ops[1]) else None


def _x86_binary(fn: Callable[[int, int], int]) -> Handler:
    """AT&T ``op src, dst``: ``dst = fn(dst, src)``."""

    def handler(f: Function, at: int, ops: list[str], depth: int) -> int | None:
        if len(ops) != 2:
            return None
        src, dst = f.operand(at, ops[0], depth), f.value(at, reg_id(ops[1]), depth)
        return None if src is None or dst is None else fn(dst, src)

    return handler


_X86: dict[str, Handler] = {
    **{f"mov{s}": _x86_mov for s in ("", "l", "q")},
    **{f"xor{s}": _x86_xor for s in ("", "l", "q")},
    **{f"add{s}": _x86_binary(lambda a, b: a + b) for s in ("", "l", "q")},
    **{f"sub{s}": _x86_binary(lambda a, b: a - b) for s in ("", "l", "q")},
    **{f"shl{s}": _x86_binary(lambda a, b: a << b) for s in ("", "l", "q")},
}


def _constant(op: str, ops: list[str]) -> bool:
    """Whether a write gives the same value however often it runs (safe to read inside a
    loop that the reader is not in): a move of an immediate, a vector-length count."""
    if op.startswith(("cnt", "rdvl")):
        return True
    if op.startswith("mov") and len(ops) == 2:
        src = ops[0] if is_x86(ops) else ops[1]
        return immediate(src) is not None or reg_id(src) == "zr"
    return op.startswith("xor") and len(ops) == 2 and reg_id(ops[0]) == reg_id(ops[1])


def branch_taken(f: Function, at: int, op: str, ops: list[str], cond: str) -> bool | None:
    """Whether the conditional branch at line ``at`` (outside every loop) is taken, when the
    comparison it tests is of constants (``cmp`` and ``b.<cond>``, or ``cbz``/``cbnz``):
    SVE vector-length checks and zero-trip guards. None where it is not known."""
    if any(s < at <= e for s, e in f.loops):
        return None
    if op in ("cbz", "cbnz"):
        v = f.operand(at, ops[0], 0)
        return None if v is None else (v == 0) == (op == "cbz")
    test = CONDITIONS.get(CONDITION_NAMES.get(cond, ""))
    compared = comparison_before(f, at, joins=True) if test is not None else None
    return None if compared is None else test(*compared)

"""Modelled cycles of executed code blocks: LLVM's disassembler and llvm-mca, in batches.

Every distinct instruction encoding is disassembled once (one ``llvm-mc`` call for all of them,
matched back through ``--show-encoding``). Each block then becomes one llvm-mca code region, and
one ``llvm-mca --json`` call per core costs all regions: a block's cycles are llvm-mca's total
cycles over ``ITERATIONS`` back-to-back executions, divided by ``ITERATIONS`` (its steady-state
throughput with its own dependencies).

What the model leaves out (:data:`MODEL_CAVEAT`): every load hits L1 (no cache or TLB misses),
branches are predicted, and blocks do not overlap each other in the pipeline.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from intvit.analysis.llvm import find_llvm_tool

ITERATIONS = 100
MODEL_CAVEAT = (
    "modelled cycles: llvm-mca per executed block x its exact count; assumes every load hits "
    "L1, no branch misses, no overlap between blocks"
)
#: Placeholder for an instruction that LLVM cannot decode or llvm-mca cannot schedule
#: (system and hint instructions): costed as one simple integer operation.
PLACEHOLDER = {"aarch64": "add x0, x0, #0", "x86_64": "nop"}
#: Every feature the counted code may use, so that LLVM decodes and parses all of it; the core's
#: own scheduling model comes from ``-mcpu`` alone.
DECODE_FEATURES = {"aarch64": "+dotprod,+i8mm,+sve,+sve2,+fullfp16,+bf16,+crc,+lse,+rcpc"}
#: Calls, which llvm-mca models with a fixed 100-cycle latency: costed as the placeholder (the
#: callee's own blocks are counted and costed where they run).
_CALL = {"aarch64": re.compile(r"^(bl|blr)\b"), "x86_64": re.compile(r"^call")}
_ENCODING = re.compile(r"^\s*(\S.*?)\s*(?://|#)\s*encoding:\s*\[")
_SENTINEL = {"aarch64": (bytes.fromhex("804622d4"), "brk #0x1234"), "x86_64": (b"\xcc", "int3")}


class CostError(RuntimeError):
    """llvm-mc or llvm-mca is missing or failed; the message says which."""


@dataclass(frozen=True)
class McaCore:
    """How llvm-mca models one core: its triple, CPU name and features."""

    arch: str  # aarch64 or x86_64
    mcpu: str
    mattr: tuple[str, ...] = ()

    @property
    def triple(self) -> str:
        return "aarch64-linux-gnu" if self.arch == "aarch64" else "x86_64-linux-gnu"


def llvm_tool(name: str) -> str:
    """The LLVM tool ``name`` (:func:`~intvit.analysis.llvm.find_llvm_tool`), or CostError."""
    return find_llvm_tool(name, CostError)


def _mc_bytes(encoding: bytes) -> str:
    return " ".join(f"0x{b:02x}" for b in encoding)


def disassemble(encodings: Iterable[bytes], arch: str) -> dict[bytes, str]:
    """Assembly text of each distinct instruction encoding; undecodable ones are left out."""
    unique = sorted(set(encodings))
    if not unique:
        return {}
    mattr = DECODE_FEATURES.get(arch, "")
    triple = McaCore(arch, "").triple
    # One instruction a line, in brackets (llvm-mc decodes each on its own, so an invalid one
    # costs only itself), each followed by a sentinel instruction that executed code never
    # holds (it would trap): the text between two sentinels is one instruction's, however
    # many lines llvm-mc prints for it (x86 prefixes get lines of their own), or nothing.
    sentinel_bytes, sentinel = _SENTINEL[arch]
    text = "".join(f"[{_mc_bytes(e)}]\n[{_mc_bytes(sentinel_bytes)}]\n" for e in unique)
    cmd = [llvm_tool("llvm-mc"), "--disassemble", f"-triple={triple}", "--show-encoding"]
    if mattr:
        cmd.append(f"-mattr={mattr}")
    result = subprocess.run(cmd, input=text, capture_output=True, text=True)
    if result.returncode != 0 and not result.stdout:
        raise CostError(f"llvm-mc failed: {result.stderr.strip()[-300:]}")
    texts: list[str] = []
    current: list[str] = []
    for m in map(_ENCODING.match, result.stdout.splitlines()):
        if not m:
            continue
        asm = " ".join(m.group(1).split())
        if asm == sentinel:
            texts.append(" ".join(current))
            current = []
        else:
            current.append(asm)
    if len(texts) != len(unique):
        raise CostError(f"llvm-mc gave {len(texts)} instructions for {len(unique)} encodings")
    return {e: t for e, t in zip(unique, texts, strict=True) if t}


def _region_text(name: str, lines: list[str]) -> str:
    return f"# LLVM-MCA-BEGIN {name}\n" + "\n".join(lines) + "\n# LLVM-MCA-END\n"


@dataclass(frozen=True)
class BlockCost:
    """One execution of a block: ``cycles`` with its dependencies (llvm-mca's total cycles over
    back-to-back executions, per execution), and ``bound``, its resource bound alone (llvm-mca's
    block reciprocal throughput: the cycles if an out-of-order core overlapped independent
    executions fully, as it does where a short dependent chain repeats in an outer loop)."""

    cycles: float
    bound: float


def _run_mca(core: McaCore, regions: list[list[str]]) -> list[BlockCost]:
    text = "".join(_region_text(f"b{i}", lines) for i, lines in enumerate(regions))
    cmd = [
        llvm_tool("llvm-mca"),
        f"-mtriple={core.triple}",
        f"-mcpu={core.mcpu}",
        f"-iterations={ITERATIONS}",
        "--json",
        "--timeline=false",
        "--bottleneck-analysis=false",
        "--instruction-info=false",
        "--resource-pressure=false",
        "-skip-unsupported-instructions=any",
    ]
    mattr = ",".join(filter(None, (DECODE_FEATURES.get(core.arch, ""), *core.mattr)))
    if mattr:
        cmd.append(f"-mattr={mattr}")
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as src:
        src.write(text)
    try:
        result = subprocess.run([*cmd, src.name], capture_output=True, text=True)
    finally:
        Path(src.name).unlink()
    if result.returncode != 0:
        errors = [ln for ln in result.stderr.splitlines() if "error" in ln]
        raise CostError("\n".join(errors) or result.stderr.strip()[-500:] or "llvm-mca failed")
    data = json.loads(result.stdout)
    costs = {}
    for region in data["CodeRegions"]:
        view = region["SummaryView"]
        per_run = view["TotalCycles"] / max(view["Iterations"], 1)
        costs[region["Name"]] = BlockCost(per_run, float(view["BlockRThroughput"]))
    return [costs[f"b{i}"] for i in range(len(regions))]


#: x86 string instructions with a ``rep`` prefix: QEMU runs each iteration as one execution of a
#: block of its own; costed per iteration at this many bytes a cycle (the fast-string microcode
#: of current cores), not with llvm-mca's fixed 100 cycles per instruction.
REP_BYTES_PER_CYCLE = 32
_REP_STRING = re.compile(r"^rep\w* (movs|stos|lods|cmps|scas)([bwlq])\b")
_ELEMENT_BYTES = {"b": 1, "w": 2, "l": 4, "q": 8}


def _rep_string_cycles(block: list[str]) -> float | None:
    """Cycles of one iteration of a block that is one ``rep`` string instruction, else None."""
    m = _REP_STRING.match(block[0]) if len(block) == 1 else None
    return _ELEMENT_BYTES[m.group(2)] / REP_BYTES_PER_CYCLE if m else None


def block_cycles(
    blocks: list[tuple[bytes, ...]], core: McaCore, asm: dict[bytes, str]
) -> list[BlockCost]:
    """Modelled cycles of one execution of each block (instructions as encodings) on ``core``.
    Lines llvm-mca cannot parse or schedule on this core are dropped from their block
    (``-skip-unsupported-instructions=any``)."""
    placeholder = PLACEHOLDER[core.arch]
    call = _CALL[core.arch]

    def line(encoding: bytes) -> str:
        text = asm.get(encoding, placeholder)
        return placeholder if call.match(text) else text

    regions = [[line(e) for e in block] or [placeholder] for block in blocks]
    string_cycles = [_rep_string_cycles(r) if core.arch == "x86_64" else None for r in regions]
    regions = [
        [placeholder] if c is not None else r for r, c in zip(regions, string_cycles, strict=True)
    ]
    costs = _run_mca(core, regions)
    return [c if s is None else BlockCost(s, s) for c, s in zip(costs, string_cycles, strict=True)]

"""Exact dynamic instruction counts of a program run under QEMU user mode, per code block.

The TCG plugin ``plugin/tbcount.c`` counts every translation block's executions inline. It is
built here from source with the host C compiler (libc and pthread only) into the project's
cache folder, and loaded by Debian's dynamically linked ``qemu-user`` (``qemu-aarch64``,
``qemu-x86_64``); ``qemu-user-static`` loads no plugins.

A run writes, beside the counts, the guest's ``/proc/self/maps``, so that every block is
attributed to the file it was loaded from and its offset there (:class:`BlockKey`), which does
not depend on where the loader placed the file. Counting two runs that differ only in the
number of inferences and dividing the difference by that number removes start-up, imports and
first-run work (:func:`per_inference`): what remains is the steady state of one inference,
identical from run to run for library code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from intvit.paths import atomic_output

PLUGIN_SOURCE = Path(__file__).with_name("plugin") / "tbcount.c"


class CountError(RuntimeError):
    """Counting cannot run here, or the counted program failed; the message says which."""


@dataclass(frozen=True)
class BlockKey:
    """Where a block starts: the file it was mapped from (``"[anon]"`` for anonymous memory,
    e.g. JIT code) and its offset from that file's load base."""

    path: str
    offset: int


@dataclass(frozen=True)
class Block:
    """A translation block's instructions as the guest executed them: each one's bytes."""

    insns: tuple[bytes, ...]

    @property
    def n_insns(self) -> int:
        return len(self.insns)


@dataclass(frozen=True)
class GuestMapping:
    """One executable mapping of the guest's address space."""

    start: int
    end: int
    path: str
    base: int  # the address of the file's offset 0


@dataclass
class Counts:
    """Executions of each block of one run (retranslations of a block summed)."""

    executions: dict[BlockKey, int]
    blocks: dict[BlockKey, Block]

    def total_instructions(self, keep=lambda key: True) -> int:
        return sum(n * self.blocks[k].n_insns for k, n in self.executions.items() if keep(k))


def qemu_binary(arch: str) -> str:
    """The plugin-capable ``qemu-<arch>``; CountError naming the package if it is missing."""
    name = f"qemu-{arch}"
    if shutil.which(name) is None:
        raise CountError(f"{name} is missing: install Debian's qemu-user (make system-deps)")
    return name


def build_plugin(cache: Path) -> Path:
    """The plugin, compiled from :data:`PLUGIN_SOURCE` into ``cache`` when the source changed."""
    cache.mkdir(parents=True, exist_ok=True)
    source = PLUGIN_SOURCE.read_bytes()
    stamp = hashlib.sha256(source).hexdigest()[:12]
    out = cache / f"tbcount-{stamp}.so"
    if out.exists():
        return out
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise CountError("no C compiler (cc/gcc) to build the QEMU counting plugin")
    with atomic_output(out) as tmp:
        cmd = [compiler, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(tmp)]
        cmd += [str(PLUGIN_SOURCE), "-lpthread"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            error = result.stderr.strip()[-400:]
            raise CountError(f"building {PLUGIN_SOURCE.name} failed: {error}")
    return out


def plugin_path() -> Path:
    """The plugin in the project's cache folder, built there on first use (``make plugin``)."""
    from intvit.paths import cache_dir

    return build_plugin(cache_dir() / "qemu-plugin")


def parse_maps(text: str) -> list[GuestMapping]:
    """The mappings of a ``/proc/self/maps`` text, each with its file's load base (the start of
    the file's mapping at offset 0, else start minus offset). All of them, not only those
    marked executable: qemu-x86_64 shows a guest's code pages as ``r--p``."""
    rows = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        path = parts[5].strip() if len(parts) == 6 else "[anon]"
        rows.append((lo, hi, parts[1], int(parts[2], 16), path))
    bases: dict[str, int] = {}
    for lo, _hi, _perms, offset, path in rows:
        if path.startswith("/"):
            bases.setdefault(path, lo - offset)
            if offset == 0:
                bases[path] = min(bases[path], lo)
    return [GuestMapping(lo, hi, path, bases.get(path, lo)) for lo, hi, _, _, path in rows]


def _locate(vaddr: int, maps: list[GuestMapping]) -> BlockKey:
    for m in maps:
        if m.start <= vaddr < m.end:
            return BlockKey(m.path, vaddr - m.base)
    return BlockKey("[anon]", vaddr)


def parse_counts(text: str, maps: list[GuestMapping]) -> Counts:
    """The plugin's output (``vaddr executions n_insns hex:hex:...`` per line) by block."""
    executions: dict[BlockKey, int] = {}
    blocks: dict[BlockKey, Block] = {}
    for line in text.splitlines():
        vaddr, count, _n, code = line.split(" ", 3)
        key = _locate(int(vaddr, 16), maps)
        insns = tuple(bytes.fromhex(h) for h in code.split(":")) if code else ()
        known = blocks.get(key)
        if known is not None and known.insns != insns:
            # Code rewritten at the same address (a JIT): keep the longer translation's text.
            if len(insns) > len(known.insns):
                blocks[key] = Block(insns)
        elif known is None:
            blocks[key] = Block(insns)
        executions[key] = executions.get(key, 0) + int(count)
    return Counts(executions, blocks)


def run_counted(
    arch: str,
    argv: list[str],
    env: Mapping[str, str],
    work: Path,
    plugin: Path,
    maps_file: Path,
    cpu: str | None = None,
    timeout: float = 3600.0,
) -> Counts:
    """Run ``argv`` (the guest program and its arguments) under ``qemu-<arch>`` with the
    counting plugin. The guest must write its ``/proc/self/maps`` to ``maps_file`` before it
    exits (the harness does); CountError with the guest's last output if it fails."""
    work.mkdir(parents=True, exist_ok=True)
    counts_file = work / f"counts-{os.getpid()}-{maps_file.stem}.txt"
    cmd = [qemu_binary(arch), "-plugin", f"{plugin},out={counts_file}"]
    if cpu:
        cmd += ["-cpu", cpu]
    try:
        result = subprocess.run(
            [*cmd, *argv], env=dict(env), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise CountError(f"the counted run did not finish within {timeout:.0f} s") from None
    if result.returncode != 0 or not counts_file.exists() or not maps_file.exists():
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise CountError(f"the counted run failed (exit {result.returncode}): {tail}")
    maps = parse_maps(maps_file.read_text())
    counts = parse_counts(counts_file.read_text(), maps)
    counts_file.unlink()
    return counts


def per_inference(short: Counts, long: Counts, extra_runs: int) -> Counts:
    """Executions per inference: (long - short) / extra_runs for every block the long run
    executed more often, as an exact integer where the difference divides evenly (library
    code), else rounded (an interpreter's noise, which callers filter out)."""
    executions = {}
    for key, n in long.executions.items():
        diff = n - short.executions.get(key, 0)
        if diff > 0:
            executions[key] = round(diff / extra_runs)
    executions = {k: v for k, v in executions.items() if v > 0}
    blocks = {k: long.blocks[k] for k in executions}
    return Counts(executions, blocks)

"""A whole model's dynamic profile on a modelled core: exact instructions per inference, their
mix, and modelled cycles, attributed to libraries and, for TVM libraries, to kernels.

A build (:class:`Build`) is counted once per emulated CPU (:func:`count_build`: two runs of
the guest harness, 1 and 2 inferences after a warm-up, differenced), then costed per core model
(:func:`cost_profile`). The harness's own code (the Python interpreter, numpy and its BLAS) is
left out; everything the runtime executes for the model is kept: the model library, the
runtime (TVM's, or ONNX Runtime's), libc, libm, libstdc++.
"""

from __future__ import annotations

import re
import subprocess
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from intvit.analysis.block_cost import McaCore, block_cycles, disassemble, llvm_tool
from intvit.analysis.guest import Guest
from intvit.analysis.instruction_mix import CLASSES, InstructionMix, classify
from intvit.analysis.qemu_count import (
    CountError,
    Counts,
    per_inference,
    plugin_path,
    run_counted,
)
from intvit.deploy.manifest import LibraryManifest

#: The harness's own code, left out of a build's profile: the interpreter, numpy, and torch
#: (which the host's tvm_ffi calls into on every call when torch is installed beside it).
_HARNESS_CODE = re.compile(
    r"/python3(\.\d+)?$|/libpython3|/numpy/|/numpy\.libs/|scipy_openblas|/ml_dtypes/|/torch/"
)
#: TVM's symbol for a PrimFunc ``f``: ``__tvm_ffi_f`` (its packed entry) and ``f_compute_``
#: (its body, where parallel loops are split off).
_TVM_SYMBOL = re.compile(r"^__tvm_ffi_(?P<a>.+)$|^(?P<b>.+)_compute_$")


@dataclass(frozen=True, kw_only=True)
class Build:
    """One build of one model, as the guest harness runs it.

    - ``runtime``: ``tvm`` (a Relax VM library) or ``onnxruntime``;
    - ``library``: the file the harness loads;
    - ``image``: the ``.npy`` input (int8 for intvit, float32 otherwise);
    - ``calls``: for a TVM library, each PrimFunc's profile category (:func:`kernel_category`),
      from the library's manifest; empty otherwise;
    - ``reference``: the ``.npy`` its output must equal exactly (an integer library's reference
      forward), checked on the counted run's last inference; None: not checked (float peers);
    - ``symbol_files``: runtime libraries whose symbols name the peer's kernels.
    """

    name: str
    model: str
    runtime: str
    library: Path
    image: Path
    calls: dict[str, str] = field(default_factory=dict)
    reference: Path | None = None
    symbol_files: tuple[str, ...] = ()

    def attributed(self) -> set[str]:
        """The file names whose blocks are attributed to kernels by their symbols: a TVM
        library's own, and ``symbol_files`` (LiteRT's library, which keeps XNNPACK's)."""
        own = {self.library.name} if self.calls else set()
        return own | set(self.symbol_files)


@dataclass(frozen=True, kw_only=True)
class KernelShare:
    """What one kernel (a TVM PrimFunc) or one library executes per inference."""

    name: str
    category: str
    instructions: int
    cycles: float
    bound_cycles: float


@dataclass(frozen=True, kw_only=True)
class BuildProfile:
    """One build on one modelled core, per inference (batch 1, one thread). ``undecoded``:
    executed instructions LLVM could not decode (costed as one simple operation each): a
    figure to check, since an instruction the modelled core lacks would show here."""

    build: str
    model: str
    core: str
    instructions: int
    mix: InstructionMix
    cycles: float
    bound_cycles: float
    clock_ghz: float
    undecoded: int
    libraries: tuple[KernelShare, ...]
    kernels: tuple[KernelShare, ...]

    @property
    def ms(self) -> float:
        """Modelled milliseconds at the core's clock (dependency-aware cycles)."""
        return self.cycles / (self.clock_ghz * 1e6)

    @property
    def bound_ms(self) -> float:
        """Modelled milliseconds of the resource bound alone."""
        return self.bound_cycles / (self.clock_ghz * 1e6)

    def category_cycles(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for k in self.kernels:
            out[k.category] += k.cycles
        return dict(out)

    def as_dict(self) -> dict:
        return {
            "build": self.build,
            "model": self.model,
            "core": self.core,
            "instructions": self.instructions,
            "mix": {c: getattr(self.mix, c) for c in CLASSES},
            "cycles": self.cycles,
            "bound_cycles": self.bound_cycles,
            "clock_ghz": self.clock_ghz,
            "undecoded": self.undecoded,
            "ms": self.ms,
            "bound_ms": self.bound_ms,
            "libraries": [vars(k) for k in self.libraries],
            "kernels": [vars(k) for k in self.kernels],
            "categories": self.category_cycles(),
        }


def kernel_category(func: str, kind: str | None, args: list) -> str:
    """A compiled kernel's profile category: intvit's kinds, with the packed GEMMs whose both
    operands are activations of one batch (rank equal: queries x keys, probabilities x values)
    as ``attention``; TVM's own kernels by their operator names."""
    from intvit.deploy.bench import categorize
    from intvit.topi import kinds

    category = categorize(func, kind)
    if kind == kinds.PACKED_GEMM and len(args) >= 2 and len(args[0][0]) == len(args[1][0]):
        return "attention"
    if kind is None and category == "gemm" and "batch_matmul" in func:
        return "attention"
    return category


def manifest_categories(manifest: LibraryManifest) -> dict[str, str]:
    """PrimFunc name -> category, from a library manifest's calls."""
    return {c.func: kernel_category(c.func, c.kind, list(c.args)) for c in manifest.calls}


def count_build(build: Build, guest: Guest, work: Path, extra_runs: int = 1) -> Counts:
    """Executions per inference of every block the build runs, the harness left out."""
    runs = {}
    stem = f"{build.name}-{build.model}".replace(" ", "_")
    output = work / f"output-{stem}.npy" if build.reference is not None else None
    plugin = plugin_path()
    for n in (1, 1 + extra_runs):
        maps = work / f"maps-{stem}-{n}.txt"
        argv = guest.argv(build.runtime, build.library, build.image, n, maps, output)
        runs[n] = run_counted(guest.arch, argv, guest.env, work, plugin, maps, guest.qemu_cpu)
        maps.unlink()
    if output is not None and build.reference is not None:
        got, want = np.load(output), np.load(build.reference)
        output.unlink()
        if got.shape != want.shape or not np.array_equal(got, want):
            raise CountError(
                f"{build.library.name} on the emulated {guest.arch} ({guest.qemu_cpu}) does not "
                "compute the reference forward's outputs bit-exactly"
            )
    counts = per_inference(runs[1], runs[1 + extra_runs], extra_runs)
    keep = {k: v for k, v in counts.executions.items() if not _HARNESS_CODE.search(k.path)}
    return Counts(keep, {k: counts.blocks[k] for k in keep})


def _symbols(library: Path) -> tuple[list[int], list[str]]:
    """Function symbols of a shared library, sorted by address."""
    out = subprocess.run(
        [llvm_tool("llvm-nm"), "--defined-only", "--numeric-sort", str(library)],
        capture_output=True,
        text=True,
    ).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def _prim_func(symbol: str) -> str:
    m = _TVM_SYMBOL.match(symbol)
    return (m.group("a") or m.group("b")) if m else symbol


#: XNNPACK's kernels by the operation their names carry (LiteRT's library keeps their symbols;
#: ONNX Runtime's is stripped, so it is attributed per library only). First match wins.
_PEER_CATEGORIES = (
    ("softmax", ("raddstoreexpminusmax", "vscaleexpminusmax", "raddexpminusmax", "softmax")),
    ("gelu", ("gelu", "verf", "approxgelu")),
    ("layernorm", ("layer_norm", "layernorm", "rmsnorm")),
    ("gemm", ("gemm", "igemm", "ppmm", "batch_matrix_multiply", "fully_connected", "conv")),
)


def peer_kernel_category(symbol: str) -> str:
    """The profile category of a peer runtime's kernel symbol (``other`` when unknown)."""
    name = symbol.lower()
    for category, keys in _PEER_CATEGORIES:
        if any(k in name for k in keys):
            return category
    return "other"


def cost_profile(
    build: Build, counts: Counts, core: McaCore, core_name: str, clock_ghz: float, arch: str
) -> BuildProfile:
    """Cost ``counts`` on ``core``: cycles per block x executions, summed per library and per
    kernel symbol of the build's attributed libraries (a TVM library's PrimFuncs, XNNPACK's
    micro-kernels)."""
    keys = sorted(counts.executions, key=lambda k: (k.path, k.offset))
    blocks = [counts.blocks[k].insns for k in keys]
    asm = disassemble([e for b in blocks for e in b], arch)
    costs = block_cycles(blocks, core, asm)
    attributed = build.attributed()
    tables: dict[str, tuple[list[int], list[str]]] = {}
    mix_counts: dict[str, int] = defaultdict(int)
    libs: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    kernels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    totals = [0.0, 0.0]
    undecoded = 0
    for key, block, cost in zip(keys, blocks, costs, strict=True):
        n = counts.executions[key]
        for enc in block:
            text = asm.get(enc)
            mix_counts[classify(text, arch) if text else "scalar"] += n
            undecoded += 0 if text else n
        shares = [libs[Path(key.path).name]]
        if Path(key.path).name in attributed:
            if key.path not in tables:
                tables[key.path] = _symbols(Path(key.path))
            addrs, names = tables[key.path]
            i = bisect_right(addrs, key.offset) - 1
            shares.append(kernels[_prim_func(names[i]) if i >= 0 else "?"])
        for share in shares:
            share[0] += n * len(block)
            share[1] += n * cost.cycles
            share[2] += n * cost.bound
        totals[0] += n * cost.cycles
        totals[1] += n * cost.bound
    return BuildProfile(
        build=build.name,
        model=build.model,
        core=core_name,
        instructions=counts.total_instructions(),
        mix=InstructionMix.of(mix_counts),
        cycles=totals[0],
        bound_cycles=totals[1],
        clock_ghz=clock_ghz,
        undecoded=undecoded,
        libraries=tuple(
            KernelShare(
                name=k, category="library", instructions=int(v[0]), cycles=v[1], bound_cycles=v[2]
            )
            for k, v in sorted(libs.items(), key=lambda kv: -kv[1][1])
        ),
        kernels=tuple(
            KernelShare(
                name=k,
                category=build.calls.get(k) or peer_kernel_category(k),
                instructions=int(v[0]),
                cycles=v[1],
                bound_cycles=v[2],
            )
            for k, v in sorted(kernels.items(), key=lambda kv: -kv[1][1])
        ),
    )


def save_input(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(image))
    return path

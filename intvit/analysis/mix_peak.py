"""The measured peak of a host micro-kernel's own instruction mix: a register-only loop of the
instructions its inner loop issues per block (no loads, 12 independent accumulators), run on
every thread the benchmark uses at once. What the packed GEMM's GMAC/s is compared with in
``benchmarks/gemm.py`` (``peak_gmacs``).

The loop is x86 inline assembly compiled with the system C compiler (``cc``), so the
instructions are exactly the named ones; ARM micro-kernels cannot run on this host (their
peaks come from the static analysis, :mod:`intvit.analysis.inner_loop`).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from intvit.topi.gemm_kernel import GemmKernel

ACCUMULATORS = 12

#: Per block, AT&T syntax: ``{acc}`` an accumulator (ymm0-11), ``{tmp}`` a scratch register
#: (ymm12/13 in turn), ymm14/15 the operands and ymm13... the vpmaddwd-by-ones constant for
#: ``vpmaddubsw`` (its real kernel's second multiply). Products per block: the kernel's
#: ``macs_per_instruction``.
_MIXES = {
    "avx2-pmaddwd": ("vpmaddwd %%ymm14, %%ymm15, %%{tmp}", "vpaddd %%{tmp}, %%{acc}, %%{acc}"),
    "avx2-maddubsw": (
        "vpmaddubsw %%ymm14, %%ymm15, %%{tmp}",
        "vpmaddwd %%ymm15, %%{tmp}, %%{tmp}",
        "vpaddd %%{tmp}, %%{acc}, %%{acc}",
    ),
    # one instruction per block; ``{prefix}``: the encoding LLVM chose ({vex} on AVX-VNNI,
    # none for AVX-512 VNNI's EVEX form)
    "avx-vnni": ("{prefix}vpdpbusd %%ymm14, %%ymm15, %%{acc}",),
}


#: The fused forms LLVM may compile a kernel's multiply and accumulate into (see
#: :data:`intvit.analysis.inner_loop.FUSED_FORMS`): on an AVX-VNNI host the ``avx2-pmaddwd``
#: kernel's ``vpmaddwd`` + ``vpaddd`` become one ``vpdpwssd``, whose own peak is the one to
#: compare with (the unfused pair's peak is lower: the GEMM measured 108-128% of it).
_FUSED_MIXES = {"vpdpwssd": ("{prefix}vpdpwssd %%ymm14, %%ymm15, %%{acc}",)}


@dataclass(frozen=True)
class Mix:
    """The instructions a peak loop issues per block: a kernel's own, or the fused form its
    compiled loop uses (``prefix``: the encoding prefix LLVM printed, e.g. ``{vex} ``)."""

    kernel: str
    form: str
    prefix: str = ""

    @property
    def instructions(self) -> tuple[str, ...]:
        mix = _FUSED_MIXES[self.form] if self.form in _FUSED_MIXES else _MIXES[self.kernel]
        prefix = self.prefix.replace("{", "{{").replace("}", "}}")
        return tuple(i.replace("{prefix}", prefix) for i in mix)

    @property
    def label(self) -> str:
        words = [i.replace("{{vex}} ", "").split()[0] for i in self.instructions]
        return " + ".join(words)


def _mix_name(kernel: GemmKernel) -> str:
    """The kernel whose mix a kernel issues: itself, or for a tile variant
    (``avx-vnni-4x6``) the kernel of its intrinsic (the same instructions per block)."""
    from intvit.schedules.intrinsics import KERNELS

    return next((k.name for k in KERNELS.values() if k.intrin == kernel.intrin), kernel.name)


def has_mix(kernel: GemmKernel) -> bool:
    return _mix_name(kernel) in _MIXES


def compiled_mix(kernel: GemmKernel) -> Mix:
    """The mix the host's compiled packed GEMM of ``kernel`` really issues: its own, or the
    fused form LLVM made of it on this CPU (read from the assembly of a scheduled GEMM)."""
    from intvit.analysis.inner_loop import accumulation_loop, kernel_assembly, loop_multiply
    from intvit.deploy.targets import get_preset

    n = kernel.lanes * kernel.n_vectors * 2
    loop = accumulation_loop(kernel_assembly(get_preset("host"), kernel, 64, 256, n),
                             kernel.instruction)  # fmt: skip
    form, _ = loop_multiply(loop, kernel.instruction)
    if form != kernel.instruction and form not in _FUSED_MIXES:
        form = kernel.instruction
    prefixed = any(line.split()[:2] == ["{vex}", form] for line in loop)
    return Mix(_mix_name(kernel), form, "{vex} " if prefixed else "")


def _source(mix: Mix) -> str:
    body = []
    for i in range(ACCUMULATORS):
        tmp = f"ymm{12 + i % 2}"
        body += [f'"{ins.format(acc=f"ymm{i}", tmp=tmp)}\\n"' for ins in mix.instructions]
    clobbers = ", ".join(f'"ymm{i}"' for i in range(16))
    lines = "\n        ".join(body)
    return f"""#include <stdint.h>
void mix_loop(int64_t iters) {{
    __asm__ volatile(
        "vpxor %%ymm14, %%ymm14, %%ymm14\\n"
        "vpxor %%ymm15, %%ymm15, %%ymm15\\n"
        "1:\\n"
        {lines}
        "dec %0\\n"
        "jnz 1b\\n"
        : "+r"(iters) : : {clobbers}, "cc");
}}
"""


def _library(mix: Mix, folder: Path) -> ctypes.CDLL:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) for the instruction-mix peak loop")
    src, lib = folder / f"{mix.kernel}.c", folder / f"{mix.kernel}.so"
    src.write_text(_source(mix))
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.mix_loop.argtypes = [ctypes.c_int64]
    return dll


def measure_mix_peak(
    kernel: GemmKernel,
    threads: int,
    iters: int = 2_000_000,
    repeat: int = 5,
    mix: Mix | None = None,
) -> float:
    """GMAC/s of the kernel's instruction mix (``mix``; default its own) on ``threads``
    threads at once (the best of ``repeat`` runs; ctypes releases the GIL for the loop)."""
    if not has_mix(kernel):
        raise ValueError(f"no host instruction mix for micro-kernel {kernel.name!r}")
    mix = mix or Mix(kernel.name, kernel.instruction)
    with tempfile.TemporaryDirectory() as tmp:
        dll = _library(mix, Path(tmp))
        dll.mix_loop(iters // 10)  # warm the cores' clocks
        best = float("inf")
        for _ in range(repeat):
            workers = [threading.Thread(target=dll.mix_loop, args=(iters,)) for _ in range(threads)]
            start = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            best = min(best, time.perf_counter() - start)
    macs = threads * iters * ACCUMULATORS * kernel.macs_per_instruction
    return macs / best / 1e9

"""The measured peak of a host micro-kernel's own instruction mix: a register-only loop of the
instructions its inner loop issues per block (no loads, 12 independent accumulators), run on
every thread the benchmark uses at once. What the packed GEMM's GMAC/s is compared with in
``benchmarks/gemm.py`` (``peak_gmacs``).

The loop is x86 inline assembly compiled with the system C compiler (``cc``), so the
instructions are exactly the named ones; ARM micro-kernels cannot run on this host (their
peaks come from the static analysis, :mod:`intvit.deploy.inner_loop`).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
import threading
import time
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
}


def has_mix(kernel: GemmKernel) -> bool:
    return kernel.name in _MIXES


def _source(kernel: GemmKernel) -> str:
    body = []
    for i in range(ACCUMULATORS):
        tmp = f"ymm{12 + i % 2}"
        body += [f'"{ins.format(acc=f"ymm{i}", tmp=tmp)}\\n"' for ins in _MIXES[kernel.name]]
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


def _library(kernel: GemmKernel, folder: Path) -> ctypes.CDLL:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) for the instruction-mix peak loop")
    src, lib = folder / f"{kernel.name}.c", folder / f"{kernel.name}.so"
    src.write_text(_source(kernel))
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.mix_loop.argtypes = [ctypes.c_int64]
    return dll


def measure_mix_peak(
    kernel: GemmKernel, threads: int, iters: int = 2_000_000, repeat: int = 5
) -> float:
    """GMAC/s of the kernel's instruction mix on ``threads`` threads at once (the best of
    ``repeat`` runs; ctypes releases the GIL for the loop)."""
    if not has_mix(kernel):
        raise ValueError(f"no host instruction mix for micro-kernel {kernel.name!r}")
    with tempfile.TemporaryDirectory() as tmp:
        dll = _library(kernel, Path(tmp))
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

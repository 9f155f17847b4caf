"""This machine's CPU as LLVM sees it (name and SIMD features): what the ``host`` preset and
the micro-kernel choice read, never assumed."""

from __future__ import annotations

import functools

import tvm


def _global(name: str):
    return tvm.get_global_func(name)


@functools.lru_cache(maxsize=1)
def host_cpu() -> tuple[str, tuple[str, ...]]:
    """(LLVM CPU name, enabled SIMD features) of this machine."""
    cpu = str(_global("tvm.codegen.llvm.GetHostCPUName")())
    feats = _global("tvm.codegen.llvm.GetHostCPUFeatures")()
    simd = (
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512vnni",
        "avxvnni",
        "neon",
        "dotprod",
        "i8mm",
    )
    return cpu, tuple(f for f in simd if bool(feats.get(f, False)))

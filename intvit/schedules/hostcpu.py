"""This machine's CPU as LLVM sees it (name and SIMD features): what the ``host`` preset and
the micro-kernel choice read, never assumed."""

from __future__ import annotations

import functools

import tvm


def _global(name: str):
    return tvm.get_global_func(name)


#: The SIMD features the micro-kernel choice reads.
SIMD_FEATURES = (
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


@functools.lru_cache(maxsize=1)
def host_cpu() -> tuple[str, tuple[str, ...]]:
    """(LLVM CPU name, enabled SIMD features) of this machine."""
    cpu = str(_global("tvm.codegen.llvm.GetHostCPUName")())
    feats = _global("tvm.codegen.llvm.GetHostCPUFeatures")()
    return cpu, tuple(f for f in SIMD_FEATURES if bool(feats.get(f, False)))


@functools.lru_cache(maxsize=64)
def _cpu_features(mcpu: str, triple: str) -> tuple[str, ...]:
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "mtriple": triple})
    feats = _global("target.llvm_get_cpu_features")(target)
    return tuple(f for f in SIMD_FEATURES if f in feats)


def x86_target_features(target: dict) -> tuple[str, ...]:
    """The SIMD features of an x86 target dict (no ``mtriple``: this machine's triple): those
    LLVM gives its ``mcpu`` plus its ``mattr``, so a library built for another x86 CPU than
    this one gets that CPU's micro-kernels. No ``mcpu``: LLVM's generic x86-64 (no AVX2);
    this machine's CPU: the features it reports."""
    mcpu = target.get("mcpu")
    host, host_features = host_cpu()
    if mcpu == host:  # this machine: the features it reports (a VM may mask some)
        feats = set(host_features)
    else:
        feats = set(_cpu_features(str(mcpu), "x86_64-linux-gnu")) if mcpu else set()
    for attr in target.get("mattr", []):
        name = attr.lstrip("+-")
        if attr.startswith("-"):
            feats.discard(name)
        elif name in SIMD_FEATURES:
            feats.add(name)
    return tuple(f for f in SIMD_FEATURES if f in feats)

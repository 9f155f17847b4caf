"""The packed GEMM's knob space swept exhaustively on the host: every point of each shape's
space (:func:`intvit.schedules.gemm.knob_space`) built, checked bit-exact and timed, against
the default knobs and the measured peak of the micro-kernel's instruction mix. What a tuning
job can reach per shape, and how far the defaults are from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm

from intvit.schedules.gemm import (
    default_knobs,
    gemm_facts,
    knob_space,
    packed_gemm_workload,
    schedule_packed_gemm,
)
from intvit.schedules.gemm_knobs import GemmKnobs
from intvit.topi.dense_packed import pack_bias, pack_weights
from intvit.topi.gemm_kernel import GemmKernel

#: (M tokens, K, N) of every DeiT-tiny and DeiT-small linear at batch 1: qkv, proj, fc1, fc2.
DEIT_SHAPES = (
    (197, 192, 576),
    (197, 192, 192),
    (197, 192, 768),
    (197, 768, 192),
    (197, 384, 1152),
    (197, 384, 384),
    (197, 384, 1536),
    (197, 1536, 384),
)


@dataclass(frozen=True)
class KnobSweep:
    """One shape's sweep: the default knobs' and the best point's GMAC/s, how many points
    were timed (every one bit-exact), and the instruction-mix peak (None where the host
    cannot run the mix)."""

    shape: str
    kernel: str
    default: GemmKnobs
    default_gmacs: float
    best: GemmKnobs
    best_gmacs: float
    points: int
    peak_gmacs: float | None

    @property
    def gain(self) -> float:
        return self.best_gmacs / self.default_gmacs

    def fraction(self, gmacs: float) -> float | None:
        return None if self.peak_gmacs is None else gmacs / self.peak_gmacs


def sweep_shape(
    m: int,
    k: int,
    n: int,
    kernel: GemmKernel,
    target,
    peak: float | None,
    min_repeat_ms: int = 30,
    progress: Callable[[int, int], None] | None = None,
) -> KnobSweep:
    """Time every knob point of the ``m x k -> n`` GEMM for ``kernel`` on this host
    (AssertionError naming the point if one is not bit-exact); of the K-blocked layouts, the
    points with the default register tile (each K block), which keeps a large-K shape's
    sweep to a few hundred points instead of thousands."""
    from intvit.bench.gemm import _time

    parallel = tvm.runtime.num_threads() > 1
    func = packed_gemm_workload((m, k), "int8", n, kernel)
    default = default_knobs(gemm_facts(tvm.s_tir.Schedule(func), kernel, parallel), kernel)
    rng = np.random.default_rng(0)
    w_lo, w_hi = max(-128, -kernel.weight_max), min(127, kernel.weight_max)
    xn = rng.integers(-128, 128, (m, k), dtype=np.int8)
    wn = rng.integers(w_lo, w_hi, (n, k), dtype=np.int8, endpoint=True)
    bn = rng.integers(-1000, 1000, n, dtype=np.int32)
    want = xn.astype(np.int32) @ wn.astype(np.int32).T + bn
    out = tvm.runtime.tensor(np.zeros((m, n), np.int32))
    packed = (xn, pack_weights(wn, kernel), pack_bias(wn, bn, "int8", kernel))
    args = [tvm.runtime.tensor(a) for a in packed] + [out]
    gmacs: dict[GemmKnobs, float] = {}
    tile = (default.m_tile, default.n_vectors)
    space = [
        p
        for p in knob_space(func, kernel, parallel)
        if not p.layout.k_blocked or (p.m_tile, p.n_vectors) == tile
    ]
    for i, knobs in enumerate(space):
        scheduled = schedule_packed_gemm(func, kernel, parallel, knobs)
        lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=target).jit()
        out.copyfrom(np.zeros((m, n), np.int32))
        lib(*args)
        if not np.array_equal(out.numpy(), want):
            raise AssertionError(f"{m}x{k}x{n} {kernel.name} {knobs} is not bit-exact")
        gmacs[knobs] = m * k * n / _time(lib, args, min_repeat_ms) / 1e6
        if progress:
            progress(i + 1, len(space))
    best = max(gmacs, key=gmacs.__getitem__)
    return KnobSweep(
        f"{m}x{k}x{n}", kernel.name, default, gmacs[default], best, gmacs[best], len(gmacs), peak
    )

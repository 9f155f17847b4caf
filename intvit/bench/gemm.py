"""The int8 GEMM benchmark: intvit's packed, tensorized GEMM against TVM's default int8 and
FP32 GEMMs of the same shape, on the host. Ratios from one run; GMAC/s recorded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import te

from intvit.analysis.mix_peak import compiled_mix, has_mix, measure_mix_peak
from intvit.bench.records import BenchRecord
from intvit.schedules.gemm import packed_gemm_func
from intvit.schedules.intrinsics import gemm_kernels_for
from intvit.topi.dense_packed import pack_bias, pack_weights
from intvit.topi.gemm_kernel import GemmKernel
from intvit.topi.matmul import dense

#: (M tokens, K, N): DeiT-tiny qkv (the issue's 197x192x576), fc1, fc2; DeiT-small qkv, fc1.
SHAPES = ((197, 192, 576), (197, 192, 768), (197, 768, 192), (197, 384, 1152), (197, 384, 1536))


def _time(mod, args, min_repeat_ms: int) -> float:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    timer = mod.time_evaluator("main", tvm.cpu(), number=5, repeat=7, min_repeat_ms=min_repeat_ms)
    return float(np.median(timer(*args).results)) * 1e3


def _build(tensors, target, schedule: Callable | None = None):
    func = te.create_prim_func(tensors)
    if schedule is not None:
        func = schedule(func)
    return tvm.compile(tvm.IRModule({"main": func}), target=target).jit()


def gemm_case(
    m: int, k: int, n: int, kernel: GemmKernel, target, min_repeat_ms: int = 50
) -> tuple[list[BenchRecord], bool]:
    """Records (ours vs TVM default int8, ours vs TVM FP32) and whether ours was exact. The
    weights span the kernel's exact range (all of int8, or +-64 for ``avx2-maddubsw``)."""
    rng = np.random.default_rng(0)
    w_lo, w_hi = max(-128, -kernel.weight_max), min(127, kernel.weight_max)
    xn = rng.integers(-128, 128, (m, k), dtype=np.int8)
    wn = rng.integers(w_lo, w_hi, (n, k), dtype=np.int8, endpoint=True)
    bn = rng.integers(-1000, 1000, n, dtype=np.int32)
    func = packed_gemm_func((m, k), "int8", n, kernel, parallel=tvm.runtime.num_threads() > 1)
    ours = tvm.compile(tvm.IRModule({"main": func}), target=target).jit()
    out = tvm.runtime.tensor(np.zeros((m, n), np.int32))
    packed = (xn, pack_weights(wn, kernel), pack_bias(wn, bn, "int8", kernel))
    args = [tvm.runtime.tensor(a) for a in packed] + [out]
    ours(*args)
    exact = bool(np.array_equal(out.numpy(), xn.astype(np.int32) @ wn.astype(np.int32).T + bn))
    ours_ms = _time(ours, args, min_repeat_ms)

    x = te.placeholder((m, k), "int8", name="x")
    b = te.placeholder((n,), "int32", name="b")
    w = te.placeholder((n, k), "int8", name="w")
    base = _build([x, w, b, dense(x, w, b)], target)
    base_ms = _time(base, [tvm.runtime.tensor(a) for a in (xn, wn, bn)] + [out], min_repeat_ms)
    xf = te.placeholder((m, k), "float32", name="xf")
    wf = te.placeholder((n, k), "float32", name="wf")
    rk = te.reduce_axis((0, k), name="k")
    yf = te.compute((m, n), lambda i, j: te.sum(xf[i, rk] * wf[j, rk], axis=rk))
    fp32 = _build([xf, wf, yf], target)
    f_args = [tvm.runtime.tensor(a.astype(np.float32)) for a in (xn, wn)]
    f_args.append(tvm.runtime.tensor(np.zeros((m, n), np.float32)))
    fp32_ms = _time(fp32, f_args, min_repeat_ms)

    macs = m * n * k
    case = f"{m}x{k}x{n}"
    extra = {"gmacs": macs / ours_ms / 1e6, "micro_kernel": kernel.name, "exact": exact}
    extra["weight_max"] = kernel.weight_max
    label = f"intvit {kernel.name}" + (" (7-bit w)" if kernel.weight_max < 127 else "")
    return [
        BenchRecord(
            case,
            label,
            "TVM int8 default",
            ours_ms,
            base_ms,
            extra=dict(extra, baseline_gmacs=macs / base_ms / 1e6),
        ),
        BenchRecord(
            case,
            label,
            "TVM FP32 default",
            ours_ms,
            fp32_ms,
            extra=dict(extra, baseline_gmacs=macs / fp32_ms / 1e6),
        ),
    ], exact


def run_gemm_bench(target: dict, shapes=SHAPES, on_record=None) -> list[BenchRecord]:
    """Every micro-kernel of ``target`` (the general one first) on every shape, each record
    with the measured peak of the kernel's instruction mix (``peak_gmacs``, see
    :mod:`intvit.analysis.mix_peak`) where the host can run it."""
    kernels = gemm_kernels_for(target)
    if not kernels:
        raise ValueError(f"no dot-product micro-kernel for target {target}")
    records = []
    tvm_target = tvm.target.Target(target)
    for kernel in reversed(kernels):
        # the kernel's own instruction mix, register-only, on the same threads (same run)
        peak, mix = None, None
        if has_mix(kernel):  # the mix its compiled loop issues (a fused form on AVX-VNNI)
            mix = compiled_mix(kernel)
            peak = measure_mix_peak(kernel, tvm.runtime.num_threads(), mix=mix)
        for m, k, n in shapes:
            new, exact = gemm_case(m, k, n, kernel, tvm_target)
            if not exact:
                raise AssertionError(f"packed GEMM {m}x{k}x{n} ({kernel.name}) is not bit-exact")
            for r in new:
                if peak is not None:
                    r.extra["peak_gmacs"] = peak
                    r.extra["peak_mix"] = mix.label
                    r.extra["fraction_of_peak"] = r.extra["gmacs"] / peak
                records.append(r)
                if on_record:
                    on_record(r)
    return records

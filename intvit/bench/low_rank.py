"""The low-rank linear benchmark: a rank-r factorized GEMM (``x [M, K] -> [M, r]``, requantized
to int8, then ``-> [M, N]``: both packed, tensorized GEMMs in one fused kernel, as an integer
low-rank model runs them, :mod:`intvit.topi.low_rank_packed`) against the full ``[M, K] x [K,
N]`` GEMM, each a compiled Relax VM function on the host, timed in alternating rounds. The
goal: time ratio <= MAC ratio ``r (K + N) / (K N)`` + 0.10."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from intvit.bench.records import BenchRecord
from intvit.deploy.compile import compile_relax
from intvit.deploy.targets import get_preset
from intvit.quant.plan_common import acc_bits
from intvit.relax_ops import ops
from intvit.schedules.intrinsics import gemm_kernels_for
from intvit.schedules.model import schedule_gemms
from intvit.topi.requantize_params import RequantParams

#: (M tokens, K, N): DeiT-tiny's qkv, fc1 and fc2, DeiT-small's qkv and fc1.
SHAPES = ((197, 192, 576), (197, 192, 768), (197, 768, 192), (197, 384, 1152), (197, 384, 1536))
RATIOS = (0.25, 0.5, 0.75)


def _module(
    m: int, k: int, n: int, rank: int | None, kernels, cores: int, rng, fused: bool = True
) -> tvm.IRModule:
    x = relax.Var("x", relax.TensorType((1, m, k), "int8"))
    bb = relax.BlockBuilder()
    with ops.gemm_kernels(kernels, cores), bb.function("main", [x]):
        with bb.dataflow():
            if rank is None:
                w = rng.integers(-127, 128, (n, k), dtype=np.int8)
                y = ops.dense(bb, x, w, np.zeros(n, np.int32), name="full")
            else:
                down = rng.integers(-127, 128, (rank, k), dtype=np.int8)
                up = rng.integers(-127, 128, (n, rank), dtype=np.int8)
                rq = RequantParams.make(2.0**-12, acc_bits(k), "int8")
                h = ops.LowRankInput(x, down, np.zeros(rank, np.int32), rq, "lr")
                if not fused:
                    h = h.materialize(bb)
                y = ops.dense(bb, h, up, np.zeros(n, np.int32), name="up")
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return schedule_gemms(bb.get(), kernels, cores)


def low_rank_cases(shapes=SHAPES, ratios=RATIOS, rounds: int = 5, on_record=None):
    """Records ``low-rank r`` vs ``full GEMM`` per shape and ratio, with ``mac_ratio``,
    ``time_ratio`` and ``meets`` (time_ratio <= mac_ratio + 0.10)."""
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    preset = get_preset("host")
    kernels = gemm_kernels_for(preset.target)
    if not kernels:
        raise ValueError("no dot-product micro-kernel on this host")
    kernels = tuple(k for k in kernels if k.weight_max >= 127)  # 8-bit weights
    rng = np.random.default_rng(0)
    dev = tvm.cpu()
    records = []
    for m, k, n in shapes:
        x = tvm.runtime.tensor(rng.integers(-128, 128, (1, m, k), dtype=np.int8))
        builds = {None: _module(m, k, n, None, kernels, preset.cores, rng)}
        for ratio in ratios:
            builds[max(1, round(ratio * min(k, n)))] = None
        for rank in [r for r in builds if r is not None]:
            builds[rank] = _module(m, k, n, rank, kernels, preset.cores, rng)
        vms = {
            r: relax.VirtualMachine(compile_relax(mod, preset, "int", "gemm").executable, dev)
            for r, mod in builds.items()
        }
        times: dict[int | None, list[float]] = {r: [] for r in vms}
        for _ in range(rounds):  # alternating rounds: machine drift moves all builds alike
            for r, vm in vms.items():
                timer = vm.time_evaluator("main", dev, number=20, repeat=1, min_repeat_ms=40)
                times[r].append(timer(x).mean * 1e3)
        full_ms = float(np.median(times[None]))
        for rank in [r for r in vms if r is not None]:
            ours_ms = float(np.median(times[rank]))
            mac_ratio = rank * (k + n) / (k * n)
            time_ratio = ours_ms / full_ms
            record = BenchRecord(
                f"{m}x{k}x{n} r={rank}",
                f"low-rank r={rank} ({kernels[0].name})",
                "full GEMM",
                ours_ms,
                full_ms,
                extra={
                    "rank": rank,
                    "mac_ratio": mac_ratio,
                    "time_ratio": time_ratio,
                    "bound": mac_ratio + 0.10,
                    "meets": time_ratio <= mac_ratio + 0.10,
                },
            )
            records.append(record)
            if on_record:
                on_record(record)
    return records

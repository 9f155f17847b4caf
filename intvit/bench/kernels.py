"""Integer kernels vs their FP32 twins, both compiled by TVM with the same default schedule.

Shapes are seed 001's Tables 3-4: softmax (12, 197, 197), GELU (197, 3072), LayerNorm
(197, 768), at batch 1 and 16. Two FP32 baselines: TVM's default lowering (what a Relax model
gets: ``exp``/``erf`` through libm) and TVM's fast-math versions (``topi.fast_exp``,
``topi.fast_erf``: vectorizable polynomials), so no speed-up rests on a weak baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te, topi

from intvit.bench.records import BenchRecord
from intvit.deploy.targets import get_preset
from intvit.schedules.compile import compile_te
from intvit.topi import gelu as gelu_te
from intvit.topi.registry import get_variant, list_variants

SHAPES = {"softmax": (12, 197, 197), "gelu": (197, 3072), "layernorm": (197, 768)}


@dataclass(frozen=True)
class KernelCase:
    op: str
    batch: int

    @property
    def name(self) -> str:
        return f"{self.op}-b{self.batch}"

    @property
    def shape(self) -> tuple[int, ...]:
        base = SHAPES[self.op]
        return (base[0] * self.batch, *base[1:])


def time_module(module, arrays: list[np.ndarray], min_repeat_ms: int = 100, repeat: int = 7):
    """Median milliseconds of ``module['main'](*arrays)`` via TVM's time_evaluator."""
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in arrays]
    timer = module.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return float(np.median(timer(*args).results)) * 1e3


def int_kernel(
    op: str, shape: tuple[int, ...], variant: str, rng
) -> tuple[list, list[np.ndarray], bool]:
    """The integer kernel ``op``/``variant`` on ``shape`` at the benchmark's scales: its TE
    tensors (inputs then output), input arrays, and whether it wants explicit vectorization."""
    v = get_variant(op, variant)
    if op == "softmax":
        q = te.placeholder(shape, "int8", name="q")
        params = v.make_params(0.08, shape[-1])
        x = rng.integers(-128, 128, shape).astype(np.int8)
        return [q, v.compute(q, params)], [x, np.zeros(shape, params.out_dtype)], False
    if op == "gelu":
        q = te.placeholder(shape, "int8", name="q")
        params = v.make_params(0.05, 0.05, in_bits=7)
        x = rng.integers(-128, 128, shape).astype(np.int8)
        if v.table_input:  # its table an input, as in the model (relax_ops.ops.gelu)
            table = te.placeholder((256,), params.out_dtype, name="table")
            out = gelu_te.gelu(q, params, table=table)
            arrays = [x, params.table_array(), np.zeros(shape, "int8")]
            return [q, table, out], arrays, v.explicit_vectorize
        out = v.compute(q, params)
        return [q, out], [x, np.zeros(shape, "int8")], v.explicit_vectorize
    q = te.placeholder(shape, "int32", name="q")
    params = v.make_params(shape[-1], 1.0, 0.0, 1 / 32, in_bits=20)
    out, tables = v.compute(q, params)
    x = rng.integers(-(2**20), 2**20, shape).astype(np.int32)
    return [q, *tables.tensors, out], [x, *tables.arrays(), np.zeros(shape, "int8")], False


def fp32_kernel(op: str, shape: tuple[int, ...], fast: bool, rng) -> tuple[list, list[np.ndarray]]:
    """The FP32 twin of ``op`` on ``shape`` (``fast``: TVM's fast-math exp/erf): its TE
    tensors and input arrays."""
    x = te.placeholder(shape, "float32", name="x")
    data = rng.normal(0, 2, shape).astype(np.float32)
    if op == "softmax":
        if fast:
            mx = topi.max(x, axis=-1, keepdims=True)
            e = topi.fast_exp(topi.subtract(x, mx))
            out = topi.divide(e, topi.sum(e, axis=-1, keepdims=True))
        else:
            out = topi.nn.softmax(x)
        return [x, out], [data, np.zeros_like(data)]
    if op == "gelu":
        erf = topi.fast_erf if fast else topi.erf
        out = topi.multiply(x, topi.add(0.5, topi.multiply(erf(topi.multiply(x, 0.70710678)), 0.5)))
        return [x, out], [data, np.zeros_like(data)]
    g = te.placeholder((shape[-1],), "float32", name="gamma")
    b = te.placeholder((shape[-1],), "float32", name="beta")
    out = topi.nn.layer_norm(x, g, b, axis=[-1], epsilon=1e-5)
    ones, zeros = np.ones(shape[-1], np.float32), np.zeros(shape[-1], np.float32)
    return [x, g, b, out], [data, ones, zeros, np.zeros_like(data)]


def run_kernel_bench(
    ops: tuple[str, ...] = ("softmax", "gelu", "layernorm"),
    batches: tuple[int, ...] = (1, 16),
    variants: dict[str, list[str]] | None = None,
    min_repeat_ms: int = 100,
    on_record: Callable[[BenchRecord], None] | None = None,
) -> list[BenchRecord]:
    """Measure every (op, batch, variant) against both FP32 baselines in one run."""
    target = get_preset("host").tvm_target()
    rng = np.random.default_rng(0)
    records: list[BenchRecord] = []
    for op in ops:
        names = (variants or {}).get(op) or [v.name for v in list_variants(op)]
        for batch in batches:
            case = KernelCase(op, batch)
            baselines = {}
            for fast in (False, True):
                if op == "layernorm" and fast:
                    continue  # no transcendental: the fast-math twin is the same kernel
                args, arrays = fp32_kernel(op, case.shape, fast, rng)
                label = "tvm-fp32-fastmath" if fast else "tvm-fp32"
                baselines[label] = time_module(compile_te(args, target), arrays, min_repeat_ms)
            for name in names:
                args, arrays, vec = int_kernel(op, case.shape, name, rng)
                ours_ms = time_module(
                    compile_te(args, target, vectorize=vec), arrays, min_repeat_ms
                )
                for label, base_ms in baselines.items():
                    record = BenchRecord(case.name, f"int-{name}", label, ours_ms, base_ms)
                    records.append(record)
                    if on_record is not None:
                        on_record(record)
    return records

"""The seed's kernel tables on modelled ARM cores: intvit's default integer softmax, GELU and
LayerNorm against their FP32 twins, each counted under QEMU and costed by llvm-mca like a whole
model (:mod:`intvit.bench.modelled`).

Shapes are MLSys'23 Tables 3-4's: softmax (12, 197, 197), GELU (197, 3072), LayerNorm (197,
768), at batch 1 and 16. The FP32 twins: TVM's default lowering (``exp``/``erf`` through libm),
TVM's fast-math versions (vectorizable polynomials; LayerNorm has none), and ONNX Runtime's own
operator (``Softmax``, ``Gelu``, ``LayerNormalization``) in a one-node model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intvit.analysis.emulated_cores import EmulatedCore
from intvit.analysis.guest import aarch64_guest
from intvit.analysis.model_profile import Build, BuildProfile
from intvit.bench.kernels import KernelCase, fp32_kernel, int_kernel
from intvit.bench.modelled import BuildError, profile_builds
from intvit.deploy.compile import cross_compiler
from intvit.deploy.targets import get_preset
from intvit.quant.config import QuantConfig
from intvit.schedules.compile import build_te

INT_KERNEL = "intvit int"
TVM_LIBM = "TVM FP32 libm"
TVM_FAST = "TVM FP32 fast-math"
ORT_OP = "ORT FP32 op"
FP32_TWINS = (TVM_LIBM, TVM_FAST, ORT_OP)
#: The seed's measured speed-ups of its integer kernels over FP32 (MLSys'23 Tables 3-4).
SEED_SPEEDUPS: dict[str, dict[str, float]] = {
    "softmax-b1": {"A13": 3.52, "M1": 4.43},
    "gelu-b1": {"A13": 4.38, "M1": 3.11},
    "layernorm-b1": {"A13": 5.56, "M1": 4.71},
    "softmax-b16": {"A13": 3.15, "M1": 4.42},
    "gelu-b16": {"A13": 4.60, "M1": 3.17},
    "layernorm-b16": {"A13": 4.89, "M1": 4.89},
}
CASES = tuple(KernelCase(op, b) for b in (1, 16) for op in ("softmax", "gelu", "layernorm"))


@dataclass(frozen=True)
class KernelRow:
    """One case on one core: each build's modelled cycles, the integer kernel's speed-up over
    each FP32 twin (twin cycles / ours), and the seed's measured speed-ups beside them."""

    case: str
    core: str
    variant: str
    cycles: dict[str, float]
    instructions: dict[str, int]
    speedups: dict[str, float]
    seed: dict[str, float]

    def as_dict(self) -> dict:
        return vars(self)


def _default_variant(op: str) -> str:
    return getattr(QuantConfig(), op)


def _export_te(args, target: dict, vectorize: bool, core: EmulatedCore, path: Path) -> Path:
    preset = get_preset(core.preset)
    build_te(args, target, vectorize=vectorize).export_library(
        str(path), fcompile=cross_compiler(preset)
    )
    return path.resolve()


def _ort_op_model(case: KernelCase, path: Path) -> Path:
    """A one-node ONNX model of ONNX Runtime's own FP32 operator for ``case``."""
    import onnx
    from onnx import TensorProto, helper

    shape = list(case.shape)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    inits = []
    if case.op == "softmax":
        node, opset = helper.make_node("Softmax", ["x"], ["y"], axis=-1), 13
    elif case.op == "gelu":
        node, opset = helper.make_node("Gelu", ["x"], ["y"]), 20
    else:
        c = shape[-1]
        inits = [
            helper.make_tensor("g", TensorProto.FLOAT, [c], np.ones(c, np.float32)),
            helper.make_tensor("b", TensorProto.FLOAT, [c], np.zeros(c, np.float32)),
        ]
        node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)
        opset = 17
    graph = helper.make_graph([node], case.name, inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path.resolve()


def kernel_builds(case: KernelCase, core: EmulatedCore, folder: Path) -> list[Build]:
    """The integer kernel (its default variant) and its FP32 twins for ``core``'s preset, one
    thread, as counted builds."""
    folder.mkdir(parents=True, exist_ok=True)
    target = dict(get_preset(core.preset).target, **{"num-cores": 1})
    rng = np.random.default_rng(0)
    stem = f"{case.name}-{core.name}"
    variant = _default_variant(case.op)
    args, arrays, vectorize = int_kernel(case.op, case.shape, variant, rng)
    npz = folder / f"{stem}-int.npz"
    np.savez(npz, *arrays)
    lib = _export_te(args, target, vectorize, core, folder / f"{stem}-int.so")
    builds = [Build(name=INT_KERNEL, model=case.name, runtime="tvm-func", library=lib, image=npz)]
    float_input = None
    for fast, label in ((False, TVM_LIBM), (True, TVM_FAST)):
        if fast and case.op == "layernorm":
            continue  # no transcendental: its fast-math twin is the same kernel
        args, arrays = fp32_kernel(case.op, case.shape, fast, rng)
        npz = folder / f"{stem}-fp32-{int(fast)}.npz"
        np.savez(npz, *arrays)
        float_input = arrays[0]
        lib = _export_te(args, target, False, core, folder / f"{stem}-fp32-{int(fast)}.so")
        builds.append(
            Build(name=label, model=case.name, runtime="tvm-func", library=lib, image=npz)
        )
    image = folder / f"{case.name}-float.npy"
    np.save(image, float_input)
    onnx_path = _ort_op_model(case, folder / f"{case.name}.onnx")
    builds.append(
        Build(name=ORT_OP, model=case.name, runtime="onnxruntime", library=onnx_path, image=image)
    )
    return builds


def kernel_rows(
    core: EmulatedCore, folder: Path, cases: tuple[KernelCase, ...] = CASES
) -> Iterator[KernelRow | BuildError]:
    """Every case on ``core``: one row each (or the error of a build that failed)."""
    guest = aarch64_guest(core)
    for case in cases:
        builds = kernel_builds(case, core, folder / "kernels")
        profiles: dict[str, BuildProfile] = {}
        for item in profile_builds(
            builds, guest, [(core.name, core.mca, core.clock_ghz)], folder / "kernels"
        ):
            if isinstance(item, BuildError):
                yield item
            else:
                profiles[item.build] = item
        if INT_KERNEL not in profiles:
            continue
        ours = profiles[INT_KERNEL].cycles
        yield KernelRow(
            case=case.name,
            core=core.name,
            variant=_default_variant(case.op),
            cycles={k: p.cycles for k, p in profiles.items()},
            instructions={k: p.instructions for k, p in profiles.items()},
            speedups={k: profiles[k].cycles / ours for k in FP32_TWINS if k in profiles},
            seed=SEED_SPEEDUPS.get(case.name, {}),
        )

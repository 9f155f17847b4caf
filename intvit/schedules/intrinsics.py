"""Dot-product micro-kernels as TensorIR tensor intrinsics, and which one a target gets.

Each intrinsic computes ``C[i] += sum_k A[k] * B[i, k]`` for one vector of int32 accumulators
(``lanes`` outputs, ``kpack`` products each) from a broadcast activation word and a packed
weight block:

- ``intvit_avx2_pmaddwd_8x2``: x86 AVX2 ``vpmaddwd`` on int16 operands (int8 values widened):
  exact, since an int8 x int8 product and a sum of two fit int32. ``vpmaddubsw`` is not used:
  it saturates u8 x s8 pair sums at int16, which would break bit-exactness.
- ``intvit_arm_sdot_4x4``: ARM ``sdot`` (+dotprod), int8 operands (uint8 activations go in
  offset by -128, see :func:`intvit.topi.dense_packed.pack_bias`).
- ``intvit_arm_neon_4x4``: ARM NEON ``smull`` + ``saddlp`` + ``addp`` for cores without
  dotprod (Cortex-A72), same layout.

TVM ships ``sdot``/NEON intrinsics of this shape in ``tvm.s_tir.tensor_intrin.arm_cpu``, but
importing that package parses every CUDA intrinsic too, which takes 90 s or more (TVMScript
calls ``inspect.stack()`` per function), so the project registers its own.

TVM 0.27's own x86 ``dot_16x4_vnni`` passes int32x16 operands to ``vpdpbusd.512``, which the
LLVM in the wheel rejects; AVX-512 VNNI is not used here (this machine has AVX2 only), see
``docs/kernels.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T


def _dot_desc(lanes: int, kpack: int, operand: str):
    """The computation every micro-kernel here implements: ``C[i] += sum_k A[k] * B[i, k]``
    for ``lanes`` int32 accumulators of ``kpack`` products each, ``operand`` inputs."""

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (kpack,), operand, offset_factor=1)
        B = T.match_buffer(b, (lanes, kpack), operand, offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:kpack], B[0:lanes, 0:kpack])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, kpack):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


@T.prim_func(s_tir=True)
def _pmaddwd_impl(
    A: T.Buffer((2,), "int16", offset_factor=1),
    B: T.Buffer((8, 2), "int16", offset_factor=1),
    C: T.Buffer((8,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:8], A[0:2], B[0:8, 0:2])
        T.writes(C[0:8])
        word = T.reinterpret(A.vload([0], "int16x2"), dtype="int32")
        a16 = T.reinterpret(T.broadcast(word, 8), dtype="int16x16")
        b16 = B.vload([0, 0], dtype="int16x16")
        C[T.ramp(T.int32(0), 1, 8)] = C[T.ramp(T.int32(0), 1, 8)] + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), a16, b16, dtype="int32x8"
        )


AVX2_PMADDWD = "intvit_avx2_pmaddwd_8x2"
TensorIntrin.register(AVX2_PMADDWD, _dot_desc(8, 2, "int16"), _pmaddwd_impl, override=True)


@T.prim_func(s_tir=True)
def _arm_sdot_impl(
    A: T.Buffer((4,), "int8", offset_factor=1),
    B: T.Buffer((4, 4), "int8", offset_factor=1),
    C: T.Buffer((4,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        word = T.reinterpret(A.vload([0], "int8x4"), dtype="int32")
        a8 = T.reinterpret(T.broadcast(word, 4), dtype="int8x16")
        b8 = B.vload([0, 0], dtype="int8x16")
        C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
            C.vload([0], dtype="int32x4"),
            a8,
            b8,
            dtype="int32x4",
        )


_SADDLP = "llvm.aarch64.neon.saddlp.v4i32.v8i16"  # pairwise widening add


@T.prim_func(s_tir=True)
def _arm_neon_impl(
    A: T.Buffer((4,), "int8", offset_factor=1),
    B: T.Buffer((4, 4), "int8", offset_factor=1),
    C: T.Buffer((4,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        word = T.reinterpret(A.vload([0], "int8x4"), dtype="int32")
        a8 = T.reinterpret(T.broadcast(word, 2), dtype="int8x8")
        b8 = B.vload([0, 0], dtype="int8x16")
        lo = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v8i16"),
            a8,
            T.vectorlow(b8, dtype="int8x8"),
            dtype="int16x8",
        )
        hi = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v8i16"),
            a8,
            T.vectorhigh(b8, dtype="int8x8"),
            dtype="int16x8",
        )
        C[T.ramp(T.int32(0), 1, 4)] = C[T.ramp(T.int32(0), 1, 4)] + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.addp.v4i32"),
            T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(_SADDLP), lo, dtype="int32x4"),
            T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(_SADDLP), hi, dtype="int32x4"),
            dtype="int32x4",
        )


ARM_SDOT = "intvit_arm_sdot_4x4"
ARM_NEON = "intvit_arm_neon_4x4"
TensorIntrin.register(ARM_SDOT, _dot_desc(4, 4, "int8"), _arm_sdot_impl, override=True)
TensorIntrin.register(ARM_NEON, _dot_desc(4, 4, "int8"), _arm_neon_impl, override=True)


@dataclass(frozen=True)
class GemmKernel:
    """A dot-product micro-kernel and the register tile around it.

    Weights are packed ``[N/lanes, K/kpack, lanes, kpack]`` in ``operand`` dtype; the tile is
    ``m_tile`` rows x ``n_vectors`` accumulator vectors, all kept in registers over K.
    """

    name: str
    intrin: str
    lanes: int
    kpack: int
    operand: str  # int16: activations widened first; int8: uint8 ones offset by -128
    m_tile: int
    n_vectors: int

    def accepts(self, x_dtype: str, n: int, k: int) -> bool:
        """Whether a constant-weight GEMM ``[.., K] x [N, K]`` fits the packed layout (int8 or
        uint8 activations: see :func:`intvit.topi.dense_packed.pack_bias`)."""
        if x_dtype not in ("int8", "uint8"):
            return False
        return n % (self.lanes * self.n_vectors) == 0 and k % self.kpack == 0


KERNELS = {
    k.name: k
    for k in (
        GemmKernel("avx2-pmaddwd", AVX2_PMADDWD, 8, 2, "int16", 6, 2),
        GemmKernel("arm-sdot", ARM_SDOT, 4, 4, "int8", 4, 4),
        GemmKernel("arm-neon", ARM_NEON, 4, 4, "int8", 4, 4),
    )
}


def gemm_kernel_for(target: dict) -> GemmKernel | None:
    """The micro-kernel a target dict supports (None: TVM's default lowering)."""
    triple = target.get("mtriple", "")
    attrs = {a.lstrip("+") for a in target.get("mattr", [])}
    if triple.startswith(("aarch64", "arm64")):
        return KERNELS["arm-sdot" if "dotprod" in attrs else "arm-neon"]
    from intvit.deploy.targets import host_cpu

    if not triple and "avx2" in host_cpu()[1]:
        return KERNELS["avx2-pmaddwd"]
    return None

"""Dot-product micro-kernels as TensorIR tensor intrinsics, and which one a target gets.

Each intrinsic computes ``C[i] += sum_k A[k] * B[i, k]`` for one vector of int32 accumulators
(``lanes`` outputs, ``kpack`` products each) from a broadcast activation word and a packed
weight block:

- ``intvit_avx2_pmaddwd_8x2``: x86 AVX2 ``vpmaddwd`` on int16 operands (int8 values widened):
  exact, since an int8 x int8 product and a sum of two fit int32. ``vpmaddubsw`` is not used:
  it saturates u8 x s8 pair sums at int16, which would break bit-exactness.
- ``dot_4x4_i8i8s32_sdot`` (TVM's): ARM ``sdot`` (+dotprod), int8 operands.
- ``dot_4x4_i8i8s32_neon`` (TVM's): ARM NEON ``smull``/``saddlp`` for cores without dotprod.

TVM 0.27's own x86 ``dot_16x4_vnni`` passes int32x16 operands to ``vpdpbusd.512``, which the
LLVM in the wheel rejects; AVX-512 VNNI is not used here (this machine has AVX2 only), see
``docs/kernels.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T


@T.prim_func(s_tir=True)
def _pmaddwd_desc(
    A: T.Buffer((2,), "int16", offset_factor=1),
    B: T.Buffer((8, 2), "int16", offset_factor=1),
    C: T.Buffer((8,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:8], A[0:2], B[0:8, 0:2])
        T.writes(C[0:8])
        for i in T.serial(0, 8):
            for k in T.serial(0, 2):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


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
TensorIntrin.register(AVX2_PMADDWD, _pmaddwd_desc, _pmaddwd_impl, override=True)


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
    operand: str  # int16: activations widened first (uint8 fine); int8: activations as is
    m_tile: int
    n_vectors: int

    def accepts(self, x_dtype: str, n: int, k: int) -> bool:
        if self.operand == "int8" and x_dtype != "int8":
            return False
        return n % (self.lanes * self.n_vectors) == 0 and k % self.kpack == 0


KERNELS = {
    k.name: k
    for k in (
        GemmKernel("avx2-pmaddwd", AVX2_PMADDWD, 8, 2, "int16", 6, 2),
        GemmKernel("arm-sdot", "dot_4x4_i8i8s32_sdot", 4, 4, "int8", 4, 4),
        GemmKernel("arm-neon", "dot_4x4_i8i8s32_neon", 4, 4, "int8", 4, 4),
    )
}


def gemm_kernel_for(target: dict) -> GemmKernel | None:
    """The micro-kernel a target dict supports (None: TVM's default lowering)."""
    import tvm.s_tir.tensor_intrin.arm_cpu  # noqa: F401  (registers TVM's ARM intrinsics)

    triple = target.get("mtriple", "")
    attrs = {a.lstrip("+") for a in target.get("mattr", [])}
    if triple.startswith(("aarch64", "arm64")):
        # arm-neon is bit-exact but LLVM takes ~150 s to build the digits ViT with it (3 s
        # with sdot): cores without dotprod keep TVM's default GEMM until that is solved.
        return KERNELS["arm-sdot"] if "dotprod" in attrs else None
    from intvit.deploy.targets import host_cpu

    if not triple and "avx2" in host_cpu()[1]:
        return KERNELS["avx2-pmaddwd"]
    return None

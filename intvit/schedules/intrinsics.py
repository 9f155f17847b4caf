"""Dot-product micro-kernels as TensorIR tensor intrinsics, and which one a target gets.

Each intrinsic computes ``C[i, j] += sum_k A[i, k] * B[j, k]`` for a ``rows x lanes`` block of
int32 accumulators (``kpack`` products each) from a block of packed activations (``rows x
kpack``) and of packed weights (``lanes x kpack``). The broadcast kernels take one row (its
activation word broadcast across the vector); ``smmla`` takes two:

- ``intvit_avx2_pmaddwd_8x2``: x86 AVX2 ``vpmaddwd`` on int16 operands (int8 values widened):
  exact, since an int8 x int8 product and a sum of two fit int32.
- ``intvit_avx2_maddubsw_8x4``: x86 AVX2 ``vpmaddubsw`` (uint8 x int8, pair sums saturated at
  int16) then ``vpmaddwd`` by ones. Exact only for weights with ``|w| <= 64`` (2 * 255 * 64 <
  2**15): the GEMMs of a model quantized with 7-bit weights, which it runs 1.2x faster than
  ``vpmaddwd`` (half the ``vpaddd``, which compete for the multiply pipes on znver3).
- ``intvit_arm_sdot_lane_4x4x4``: ARM ``sdot`` (+dotprod) in its by-element form, ``sdot
  vD.4s, vW.16b, vA.4b[row]``, int8 operands (uint8 activations go in offset by -128, see
  :func:`intvit.topi.dense_packed.pack_bias`): one 16-byte load holds four rows' activation
  words, and each of the four ``sdot`` picks its row's word by lane, as XNNPACK, ruy and
  KleidiAI do. The kernel every dotprod preset uses.
- ``intvit_arm_sdot_4x4``: the broadcast form, one ``ld1r`` per row: the ``ld1r`` also
  occupies a vector pipe (Neoverse N1, Cortex-A76), which left the ``sdot`` pipes 20% idle
  (``benchmarks/arm_static.py``); kept as the static analysis' baseline.
- ``intvit_arm_neon_sadalp_8x2``: ARM NEON for cores without dotprod (Cortex-A72, the rpi4
  preset), K in pairs: ``smull`` of a row's activation pair (``ld1r`` of 2 bytes) and 4
  columns x 2 of weights (an 8-byte load), the int16 product pairs summed straight into the
  int32 accumulators by ``sadalp``. Exact for any int8 operands (each int16 product, even
  -128 x -128, fits; the pair sum is taken in int32). Per 8 products one ``smull`` on
  Cortex-A72's one multiply pipe (F0) and one ``sadalp`` on the other (F1): 95% of the A72's
  ``smull`` peak in llvm-mca with a 2 x 5 tile (``benchmarks/arm_static.py``).
- ``intvit_arm_neon_pair16_4x4``: the NEON kernel it replaced on rpi4, K in fours: ``smull``
  of both weight halves, their products summed in pairs in int16 (``addp``, exact only for
  ``|w| <= 127``), then ``sadalp``: 5 instructions per 16 products, 87% of peak at its best
  tile; kept as the static analysis' baseline (and tested bit-exact like every kernel).
- ``intvit_arm_smmla_2x2x8``: ARM ``smmla`` (+i8mm: Graviton3, Apple M2 and later): a 2x8 by
  8x2 int8 matrix product into a 2x2 int32 block, twice the products of ``sdot`` per
  instruction. Activations and accumulators are packed in row pairs for it.

TVM ships ``sdot``/NEON intrinsics of this shape in ``tvm.s_tir.tensor_intrin.arm_cpu``, but
importing that package parses every CUDA intrinsic too, which takes 90 s or more (TVMScript
calls ``inspect.stack()`` per function), so the project registers its own.

- ``intvit_avx_vnni_dpbusd_8x4``: x86 ``vpdpbusd`` (AVX-VNNI, or AVX-512 VNNI with VL) on
  ymm registers: uint8 activations (int8 ones offset by +128, the bias compensating) x int8
  weights, four products per lane summed into int32 without saturation, so exact for every
  int8 weight. On hosts that have it, every constant-weight GEMM uses it.

TVM 0.27's own x86 ``dot_16x4_vnni`` passes int32x16 operands to ``vpdpbusd.512``, which the
LLVM in the wheel rejects (it types the operands as i8 vectors, as ``_vnni_impl`` does).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from tvm import DataType
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from intvit.schedules.hostcpu import x86_target_features
from intvit.topi.gemm_kernel import GemmKernel
from intvit.topi.kinds import GEMM_KERNEL_ATTR


def _dot_desc(rows: int, lanes: int, kpack: int, operand: str, weight: str | None = None):
    """The computation every micro-kernel here implements: ``C[i, j] += sum_k A[i, k] *
    B[j, k]`` for ``rows x lanes`` int32 accumulators of ``kpack`` products each, ``operand``
    activations and ``weight`` (default: ``operand``) weights (each buffer a contiguous block
    of the packed layouts). With one row, the row loop is left out: a scheduled block binds
    its unit row axis to 0, and tensorize compares the bindings."""
    weight = weight or operand

    @T.prim_func(s_tir=True)
    def desc_one_row(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (1, kpack), operand, offset_factor=1)
        B = T.match_buffer(b, (lanes, kpack), weight, offset_factor=1)
        C = T.match_buffer(c, (1, lanes), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0, 0:lanes], A[0, 0:kpack], B[0:lanes, 0:kpack])
            T.writes(C[0, 0:lanes])
            for j, k in T.grid(lanes, kpack):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    C[0, vj] = C[0, vj] + T.cast(A[0, vk], "int32") * T.cast(B[vj, vk], "int32")

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (rows, kpack), operand, offset_factor=1)
        B = T.match_buffer(b, (lanes, kpack), weight, offset_factor=1)
        C = T.match_buffer(c, (rows, lanes), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:rows, 0:lanes], A[0:rows, 0:kpack], B[0:lanes, 0:kpack])
            T.writes(C[0:rows, 0:lanes])
            for i, j, k in T.grid(rows, lanes, kpack):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + T.cast(A[vi, vk], "int32") * T.cast(B[vj, vk], "int32")

    return desc_one_row if rows == 1 else desc


def _broadcast_word(a, word: str, copies: int, dtype: str):
    """The activation block of ``a`` (one 16- or 32-bit word of ``word`` lanes: a row's
    ``kpack`` values) repeated ``copies`` times, read as ``dtype``. A Python helper that
    TVMScript calls while parsing, so each intrinsic stays one expression (see
    :func:`_pmaddwd_impl`)."""
    bits = DataType(word).bits * DataType(word).lanes
    packed = T.reinterpret(a.vload([0, 0], word), dtype=f"int{bits}")
    return T.reinterpret(T.broadcast(packed, copies), dtype=dtype)


@T.prim_func(s_tir=True)
def _pmaddwd_impl(
    A: T.Buffer((1, 2), "int16", offset_factor=1),
    B: T.Buffer((8, 2), "int16", offset_factor=1),
    C: T.Buffer((1, 8), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0, 0:8], A[0, 0:2], B[0:8, 0:2])
        T.writes(C[0, 0:8])
        # One expression: a named intermediate (``word = ...``) becomes a local buffer in
        # TVMScript, and LLVM then keeps its last value for a store after the k loop: one
        # broadcast per step went through a GPR (movd + vpbroadcastd on a vector port, which
        # vpaddd needs) and the weight pointer spilled. Inline: DeiT-small 38.9 -> 37.8 ms.
        C.vstore(
            [0, 0],
            C.vload([0, 0], dtype="int32x8")
            + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                _broadcast_word(A, "int16x2", 8, "int16x16"),
                B.vload([0, 0], dtype="int16x16"),
                dtype="int32x8",
            ),
        )


AVX2_PMADDWD = "intvit_avx2_pmaddwd_8x2"
TensorIntrin.register(AVX2_PMADDWD, _dot_desc(1, 8, 2, "int16"), _pmaddwd_impl, override=True)


@T.prim_func(s_tir=True)
def _maddubsw_impl(
    A: T.Buffer((1, 4), "uint8", offset_factor=1),
    B: T.Buffer((8, 4), "int8", offset_factor=1),
    C: T.Buffer((1, 8), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0, 0:8], A[0, 0:4], B[0:8, 0:4])
        T.writes(C[0, 0:8])
        # vpmaddubsw: uint8 activations x int8 weights, adjacent products summed in int16
        # (exact: |w| <= 64, so |a0 w0 + a1 w1| <= 2 * 255 * 64 < 2**15); vpmaddwd by ones
        # sums those pairs into int32: four products per lane, one expression (see above)
        C.vstore(
            [0, 0],
            C.vload([0, 0], dtype="int32x8")
            + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                    _broadcast_word(A, "uint8x4", 8, "int8x32"),
                    B.vload([0, 0], dtype="int8x32"),
                    dtype="int16x16",
                ),
                T.broadcast(T.int16(1), 16),
                dtype="int32x8",
            ),
        )


AVX2_MADDUBSW = "intvit_avx2_maddubsw_8x4"
TensorIntrin.register(
    AVX2_MADDUBSW, _dot_desc(1, 8, 4, "uint8", "int8"), _maddubsw_impl, override=True
)


def _accumulating_dot_impl(intrinsic: str, lanes: int, operand: str, word: str, vector: str):
    """``C = intrinsic(C, A's word broadcast, B)``: one instruction that multiplies a row's
    ``kpack = 4`` activations (``operand``, the 32-bit ``word``) by ``lanes x 4`` int8 weights
    and adds the four products of each lane to its int32 accumulator (``vector``: the
    operands' i8 vector type). ARM ``sdot`` and x86 ``vpdpbusd`` are both of this form."""

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (1, 4), operand, offset_factor=1)
        B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (1, lanes), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0, 0:lanes], A[0, 0:4], B[0:lanes, 0:4])
            T.writes(C[0, 0:lanes])
            C.vstore(
                [0, 0],
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(intrinsic),
                    C.vload([0, 0], dtype=f"int32x{lanes}"),
                    _broadcast_word(A, word, lanes, vector),
                    B.vload([0, 0], dtype=vector),
                    dtype=f"int32x{lanes}",
                ),
            )

    return impl


# vpdpbusd: uint8 activations x int8 weights, the four products of each lane summed into its
# int32 accumulator with no intermediate saturation (exact for any int8 weight, -128
# included). The LLVM in TVM's wheel types its operands as i8 vectors.
_vnni_impl = _accumulating_dot_impl(
    "llvm.x86.avx512.vpdpbusd.256", 8, "uint8", "uint8x4", "int8x32"
)


AVX_VNNI = "intvit_avx_vnni_dpbusd_8x4"
TensorIntrin.register(AVX_VNNI, _dot_desc(1, 8, 4, "uint8", "int8"), _vnni_impl, override=True)


_arm_sdot_impl = _accumulating_dot_impl(
    "llvm.aarch64.neon.sdot.v4i32.v16i8", 4, "int8", "int8x4", "int8x16"
)


def _sdot_by_lane(c, b, a, row: int):
    """``sdot(C[row], B, lane row of A)``: the weight block ``b`` (4 columns x 4) against
    activation row ``row`` of ``a`` (4 rows x 4 int8, one 16-byte vector), its word
    duplicated across the vector by a shuffle, which LLVM folds into the by-element ``sdot``
    (no broadcast instruction). A Python helper that TVMScript calls while parsing (see
    :func:`_pmaddwd_impl`)."""
    words = T.reinterpret(a.vload([0, 0], dtype="int8x16"), dtype="int32x4")
    word = T.reinterpret(T.Shuffle([words], [row, row, row, row]), dtype="int8x16")
    return T.call_llvm_pure_intrin(
        T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
        c.vload([row, 0], dtype="int32x4"),
        b.vload([0, 0], dtype="int8x16"),
        word,
        dtype="int32x4",
    )


@T.prim_func(s_tir=True)
def _arm_sdot_lane_impl(
    A: T.Buffer((4, 4), "int8", offset_factor=1),
    B: T.Buffer((4, 4), "int8", offset_factor=1),
    C: T.Buffer((4, 4), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:4, 0:4], A[0:4, 0:4], B[0:4, 0:4])
        T.writes(C[0:4, 0:4])
        # LLVM merges the four identical 16-byte loads of A (and of B) into one each
        C.vstore([0, 0], _sdot_by_lane(C, B, A, 0))
        C.vstore([1, 0], _sdot_by_lane(C, B, A, 1))
        C.vstore([2, 0], _sdot_by_lane(C, B, A, 2))
        C.vstore([3, 0], _sdot_by_lane(C, B, A, 3))


_SADDLP = "llvm.aarch64.neon.saddlp.v4i32.v8i16"  # pairwise widening add
_SMULL = "llvm.aarch64.neon.smull.v8i16"


def _neon_sadalp(c, a, b, column: int):
    """``sadalp(C[0, column:column+4], smull(pair, B[column:column+4]))``: the activation
    pair of ``a`` (2 int8 values, repeated 4 times) times 4 columns x 2 of the weight block
    ``b`` (an 8-byte load of its own: the high half of a 16-byte one cost an ``ext`` on a
    vector pipe), the int16 products summed in pairs straight into the int32 accumulators
    (the add of ``saddlp`` becomes ``sadalp``). A Python helper that TVMScript calls while
    parsing (see :func:`_pmaddwd_impl`)."""
    product = T.call_llvm_pure_intrin(
        T.llvm_lookup_intrinsic_id(_SMULL),
        _broadcast_word(a, "int8x2", 4, "int8x8"),
        b.vload([column, 0], dtype="int8x8"),
        dtype="int16x8",
    )
    return c.vload([0, column], dtype="int32x4") + T.call_llvm_pure_intrin(
        T.llvm_lookup_intrinsic_id(_SADDLP), product, dtype="int32x4"
    )


@T.prim_func(s_tir=True)
def _arm_neon_impl(
    A: T.Buffer((1, 2), "int8", offset_factor=1),
    B: T.Buffer((8, 2), "int8", offset_factor=1),
    C: T.Buffer((1, 8), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0, 0:8], A[0, 0:2], B[0:8, 0:2])
        T.writes(C[0, 0:8])
        # per 16 products: two smull (the multiply pipe) and two sadalp (the other)
        C.vstore([0, 0], _neon_sadalp(C, A, B, 0))
        C.vstore([0, 4], _neon_sadalp(C, A, B, 4))


def _neon_pair16_dot(a, b):
    """``saddlp(addp16(smull(word, low(b)), smull2(word, high(b))))``: the activation word
    of ``a`` (4 int8 values, repeated to 16) times the weight block ``b`` (4 columns x 4),
    the int16 products summed in pairs in int16 (exact while ``|w| <= 127``: ``2 * 128 * 127
    < 2**15``), then in pairs into int32 (one sum per column): five instructions per block."""
    word = _broadcast_word(a, "int8x4", 4, "int8x16")
    weights = b.vload([0, 0], dtype="int8x16")
    low, high = (
        T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(_SMULL),
            half(word, dtype="int8x8"),
            half(weights, dtype="int8x8"),
            dtype="int16x8",
        )
        for half in (T.vectorlow, T.vectorhigh)
    )
    pairs = T.call_llvm_pure_intrin(
        T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.addp.v8i16"), low, high, dtype="int16x8"
    )
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(_SADDLP), pairs, dtype="int32x4")


@T.prim_func(s_tir=True)
def _arm_neon_pair16_impl(
    A: T.Buffer((1, 4), "int8", offset_factor=1),
    B: T.Buffer((4, 4), "int8", offset_factor=1),
    C: T.Buffer((1, 4), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0, 0:4], A[0, 0:4], B[0:4, 0:4])
        T.writes(C[0, 0:4])
        # the add of saddlp's result becomes one sadalp
        C.vstore([0, 0], C.vload([0, 0], dtype="int32x4") + _neon_pair16_dot(A, B))


@T.prim_func(s_tir=True)
def _arm_smmla_impl(
    A: T.Buffer((2, 8), "int8", offset_factor=1),
    B: T.Buffer((2, 8), "int8", offset_factor=1),
    C: T.Buffer((2, 2), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:2, 0:2], A[0:2, 0:8], B[0:2, 0:8])
        T.writes(C[0:2, 0:2])
        # smmla Vd.4S, Vn.16B, Vm.16B: Vd (2x2, row-major) += Vn (2x8) * Vm (2x8)^T
        C.vstore(
            [0, 0],
            T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smmla.v4i32.v16i8"),
                C.vload([0, 0], dtype="int32x4"),
                A.vload([0, 0], dtype="int8x16"),
                B.vload([0, 0], dtype="int8x16"),
                dtype="int32x4",
            ),
        )


ARM_SDOT = "intvit_arm_sdot_4x4"
ARM_SDOT_LANE = "intvit_arm_sdot_lane_4x4x4"
ARM_NEON = "intvit_arm_neon_sadalp_8x2"
ARM_NEON_PAIR16 = "intvit_arm_neon_pair16_4x4"
ARM_SMMLA = "intvit_arm_smmla_2x2x8"
TensorIntrin.register(ARM_SDOT, _dot_desc(1, 4, 4, "int8"), _arm_sdot_impl, override=True)
TensorIntrin.register(ARM_SDOT_LANE, _dot_desc(4, 4, 4, "int8"), _arm_sdot_lane_impl, override=True)
TensorIntrin.register(ARM_NEON, _dot_desc(1, 8, 2, "int8"), _arm_neon_impl, override=True)
TensorIntrin.register(
    ARM_NEON_PAIR16, _dot_desc(1, 4, 4, "int8"), _arm_neon_pair16_impl, override=True
)
TensorIntrin.register(ARM_SMMLA, _dot_desc(2, 2, 8, "int8"), _arm_smmla_impl, override=True)


KERNELS = {
    k.name: k
    for k in (
        GemmKernel(
            name="avx2-pmaddwd",
            intrin=AVX2_PMADDWD,
            lanes=8,
            kpack=2,
            operand="int16",
            m_tile=6,
            n_vectors=2,
            rows=1,
            weight_max=128,
            instruction="vpmaddwd",
            macs_per_instruction=16,
        ),
        # twice the products per multiply of pmaddwd; 7-bit weights only (QuantConfig
        # weight_bits=7), the int16 pair sums could saturate with 8-bit ones
        GemmKernel(
            name="avx2-maddubsw",
            intrin=AVX2_MADDUBSW,
            lanes=8,
            kpack=4,
            operand="uint8",
            m_tile=6,
            n_vectors=2,
            rows=1,
            weight_max=64,
            instruction="vpmaddubsw",
            macs_per_instruction=32,
            mul_ops_per_instruction=2,
        ),
        # AVX-VNNI / AVX-512 VNNI (ymm): 32 products per instruction like vpmaddubsw, in one
        # instruction instead of two and exact for 8-bit weights
        GemmKernel(
            name="avx-vnni",
            intrin=AVX_VNNI,
            lanes=8,
            kpack=4,
            operand="uint8",
            m_tile=6,
            n_vectors=2,
            rows=1,
            weight_max=128,
            instruction="vpdpbusd",
            macs_per_instruction=32,
        ),
        # 8 rows x 3 vectors: 24 accumulator registers, 3 weight and 2 activation loads per
        # 24 sdot (29 of the 32 vector registers)
        GemmKernel(
            name="arm-sdot-lane",
            intrin=ARM_SDOT_LANE,
            lanes=4,
            kpack=4,
            operand="int8",
            m_tile=8,
            n_vectors=3,
            rows=4,
            weight_max=128,
            instruction="sdot",
            macs_per_instruction=16,
        ),
        GemmKernel(
            name="arm-sdot",
            intrin=ARM_SDOT,
            lanes=4,
            kpack=4,
            operand="int8",
            m_tile=4,
            n_vectors=4,
            rows=1,
            weight_max=128,
            instruction="sdot",
            macs_per_instruction=16,
        ),
        # weights within +-127: int16 pair sums, 5 instructions per 16 products; 4 x 3
        # blocks (a 4 x 4 tile ran out of registers): 87% of Cortex-A72's smull peak in
        # llvm-mca. The static analysis' baseline for arm-neon, which replaced it.
        GemmKernel(
            name="arm-neon-pair16",
            intrin=ARM_NEON_PAIR16,
            lanes=4,
            kpack=4,
            operand="int8",
            m_tile=4,
            n_vectors=3,
            rows=1,
            weight_max=127,
            instruction="smull",
            macs_per_instruction=8,
        ),
        # any int8 operands, K in pairs, smull + sadalp per 8 products. 2 rows x 5 vectors
        # of 8 columns (20 accumulator registers, 5 weight, 1 activation): Cortex-A72 in
        # llvm-mca, of its smull peak: 2 x 5 95%, 3 x 3 89%, 2 x 4 87%, 4 x 2 86%, 6 x 2
        # 84% (an ld1r per row also takes a vector pipe); 4 x 3 spilled (48%)
        GemmKernel(
            name="arm-neon",
            intrin=ARM_NEON,
            lanes=8,
            kpack=2,
            operand="int8",
            m_tile=2,
            n_vectors=5,
            rows=1,
            weight_max=128,
            instruction="smull",
            macs_per_instruction=8,
        ),
        # 16 accumulator registers (4 row pairs x 4 column pairs), 8 for the operands
        GemmKernel(
            name="arm-smmla",
            intrin=ARM_SMMLA,
            lanes=2,
            kpack=8,
            operand="int8",
            m_tile=8,
            n_vectors=4,
            rows=2,
            weight_max=128,
            instruction="smmla",
            macs_per_instruction=32,
        ),
    )
}


def gemm_kernels_for(target: dict) -> tuple[GemmKernel, ...]:
    """The micro-kernels a target dict supports, the one each GEMM tries first first (empty:
    TVM's default lowering). With VNNI, ``avx-vnni`` takes every GEMM, attention's runtime
    operands too (see ``relax_ops.ops._batch_matmul_kernel``), and ``avx2-pmaddwd`` stays
    listed for int16 operands; on AVX2 alone, ``avx2-maddubsw`` takes the GEMMs whose weights
    fit 7 bits and ``avx2-pmaddwd`` the rest, attention's included."""
    from intvit.schedules.triple import is_arm64, is_x86_64

    attrs = {a.lstrip("+") for a in target.get("mattr", [])}
    if is_arm64(target):
        if "i8mm" in attrs:
            return (KERNELS["arm-smmla"],)
        if "dotprod" in attrs:
            return (KERNELS["arm-sdot-lane"],)
        return (KERNELS["arm-neon"],)
    if not is_x86_64(target):
        return ()
    features = x86_target_features(target)
    if has_vnni(features):
        return *vnni_kernels(features), KERNELS["avx2-pmaddwd"]
    if "avx2" in features:
        return KERNELS["avx2-maddubsw"], KERNELS["avx2-pmaddwd"]
    return ()


def vnni_kernel(features: tuple[str, ...]) -> GemmKernel:
    """``avx-vnni`` with the register tile the CPU's registers hold: 4 rows x 4 vectors (16
    accumulators) with AVX-512's 32 vector registers, else 6 x 2 (12 of 16). Measured on
    this project's AVX-512 host (2 threads, GMAC/s, 6 x 2 -> 4 x 4): 197x768x192 300 -> 380,
    197x192x576 320 -> 318, 197x384x1152 378 -> 382, the 48-column 197x192x48 213 -> 196."""
    kernel = KERNELS["avx-vnni"]
    if "avx512vl" in features:
        return replace(kernel, m_tile=4, n_vectors=4)
    return kernel


def vnni_kernels(features: tuple[str, ...]) -> tuple[GemmKernel, ...]:
    """The ``avx-vnni`` tiles for a CPU, the default first (:func:`vnni_kernel`). With 32
    registers also 4 rows x 6 vectors (``avx-vnni-4x6``, 24 accumulators, 48 columns), which
    :func:`kernel_for_gemm` takes where the columns are a whole number of its tiles and not of
    the default's (a 48-column GEMM), and which bounds the widest tile
    :func:`first_factor_tile` gives a fused low-rank linear's first GEMM. Measured (2
    threads, 197 rows, requantized, the accumulators and epilogue in registers): 197x192x48
    12.0 -> 8.8 us, 197x768x48 28.0 -> 22.6 us."""
    default = vnni_kernel(features)
    if "avx512vl" not in features:
        return (default,)
    return default, replace(default, name="avx-vnni-4x6", n_vectors=6)


def has_vnni(features: tuple[str, ...]) -> bool:
    """Whether a CPU with these features runs ``vpdpbusd`` on ymm registers: AVX-VNNI, or
    AVX-512 VNNI with its 256-bit forms (AVX-512 VL)."""
    return "avxvnni" in features or {"avx512vnni", "avx512vl"} <= set(features)


def gemm_kernel_for(target: dict) -> GemmKernel | None:
    """The micro-kernel a target dict supports for any int8 GEMM (8-bit weights included;
    None: TVM's default lowering); :func:`gemm_kernels_for` lists the narrower ones too."""
    kernels = gemm_kernels_for(target)
    return kernels[-1] if kernels else None


def kernel_for_gemm(
    kernels: tuple[GemmKernel, ...], x_dtype: str, w: np.ndarray
) -> GemmKernel | None:
    """The first of ``kernels`` that computes ``x [.., K] x w [N, K]^T`` exactly (operand
    dtype, tile divisibility and weight range), or None. Among the tiles of that kernel's
    instruction, the first whose columns divide ``N`` (no padded columns) is preferred."""
    n, k = w.shape
    fits = [kn for kn in kernels if kn.accepts(x_dtype, n, k) and kn.takes_weights(w)]
    if not fits:
        return None
    same = [kn for kn in fits if (kn.intrin, kn.operand) == (fits[0].intrin, fits[0].operand)]
    return next((kn for kn in same if n % (kn.lanes * kn.n_vectors) == 0), fits[0])


def first_factor_tile(kernels: tuple[GemmKernel, ...], kernel: GemmKernel, rank: int) -> GemmKernel:
    """``kernel`` with the register tile a fused low-rank linear's first GEMM takes
    (:mod:`intvit.topi.low_rank_packed`): the vectors that pad the rank's columns least (then
    the most of them), at most as many as the widest tile of that instruction among
    ``kernels``, and a tile whose columns are whole ``kpack`` steps of the second GEMM (which
    reads every padded column of the first: ``smmla``'s 2-column vectors 4 at a time)."""
    widest = max(
        kn.n_vectors
        for kn in kernels
        if (kn.intrin, kn.operand, kn.m_tile) == (kernel.intrin, kernel.operand, kernel.m_tile)
    )
    blocks = -(-rank // kernel.lanes)
    valid = [v for v in range(1, widest + 1) if kernel.lanes * v % kernel.kpack == 0]
    if not valid:
        raise ValueError(f"{kernel.name}: no tile of whole {kernel.kpack}-deep steps")
    vectors = min(valid, key=lambda v: (-(-blocks // v) * v, -v))
    return replace(kernel, n_vectors=vectors)


def kernel_of_func(
    func, kernels: tuple[GemmKernel, ...], attr: str = GEMM_KERNEL_ATTR
) -> GemmKernel:
    """Which of ``kernels`` a packed GEMM PrimFunc was packed for: the one its
    ``intvit.gemm_kernel`` attribute (or ``attr``: a fused low-rank linear's first GEMM's)
    names (set where it is emitted, :mod:`intvit.relax_ops.ops`); two kernels of a target may
    pack the same operand dtype with different tiles (``avx-vnni`` and ``avx-vnni-4x6``)."""
    name = func.attrs.get(attr) if func.attrs is not None else None
    for kernel in kernels:
        if kernel.name == name:
            return kernel
    raise ValueError(
        f"packed GEMM names micro-kernel {name!r}, not one of {[k.name for k in kernels]}"
    )

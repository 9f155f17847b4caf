"""What a packed GEMM's micro-kernel is: its dot-product instruction, operand dtypes and
register tile (the TE compute packs for it; :mod:`intvit.schedules.intrinsics` registers the
instructions and lists the kernels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class GemmKernel:
    """A dot-product micro-kernel and the register tile around it.

    Weights are packed ``[N/lanes, K/kpack, lanes, kpack]`` in ``operand`` dtype, activations
    (in the kernel) ``[M/rows, K/kpack, rows, kpack]`` and the accumulators ``[M/rows,
    N/lanes, rows, lanes]``; the register tile is ``m_tile`` rows x ``n_vectors`` blocks of
    ``lanes`` columns, all kept in registers over K.
    """

    name: str
    intrin: str
    lanes: int
    kpack: int
    operand: str  # the activations' operand dtype (int8 x offset by +128 for uint8, and back)
    m_tile: int  # a multiple of rows
    n_vectors: int
    rows: int = 1  # activation rows per intrinsic (2 for smmla, 4 for by-element sdot)
    weight_max: int = 128  # the largest |w| the kernel sums exactly (128: any int8)
    #: Its multiply instruction (the mnemonic in the assembly), the int8 products each one
    #: computes, and the multiply-pipe instructions it takes per such instruction (2 for
    #: ``vpmaddubsw``, followed by a ``vpmaddwd`` by ones): what the static analysis counts.
    instruction: str = ""
    macs_per_instruction: int = 0
    mul_ops_per_instruction: int = 1

    @property
    def weight_operand(self) -> str:
        """The weights' operand dtype: int16 (widened from int8 in the kernel) for an int16
        kernel, else int8 as stored."""
        return "int16" if self.operand == "int16" else "int8"

    def takes_weights(self, w: np.ndarray) -> bool:
        """Whether every weight is within the kernel's exact range (``|w| <= weight_max``)."""
        return int(np.abs(w.astype(np.int16)).max(initial=0)) <= self.weight_max

    def accepts(self, x_dtype: str, n: int, k: int) -> bool:
        """Whether a constant-weight GEMM ``[.., K] x [N, K]`` can use the kernel: int8 or
        uint8 activations (see :func:`intvit.topi.dense_packed.pack_bias`); any ``N`` and
        ``K``, padded to the register tile inside the kernel
        (:func:`~intvit.topi.dense_packed.padded_shape`)."""
        return x_dtype in ("int8", "uint8") and n >= 1 and k >= 1

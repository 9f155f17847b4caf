"""What each compiled kernel is, as a PrimFunc attribute set where it is emitted
(:func:`intvit.relax_ops.emit.emit_te`): the schedules, the tuner and the profile route on it,
never on function names."""

from __future__ import annotations

#: The PrimFunc attribute holding the kind.
KERNEL_ATTR = "intvit.kernel"
#: The PrimFunc attribute of a packed GEMM naming the micro-kernel its operands were packed
#: for (:class:`~intvit.topi.gemm_kernel.GemmKernel` ``name``): the schedule it gets.
GEMM_KERNEL_ATTR = "intvit.gemm_kernel"
#: A fused low-rank linear's first GEMM's micro-kernel (``GEMM_KERNEL_ATTR``: the second's),
#: and how many chunks of rows its parallel loop runs (``str(int)``).
FIRST_GEMM_KERNEL_ATTR = "intvit.gemm_kernel_first"
FIRST_GEMM_VECTORS_ATTR = "intvit.gemm_vectors_first"  # its tile's vectors (``str(int)``)
ROW_CHUNKS_ATTR = "intvit.row_chunks"

PACKED_GEMM = "packed_gemm"  # a GEMM tensorized with a dot-product micro-kernel
LOW_RANK_GEMM = "low_rank_gemm"  # a low-rank linear's two packed GEMMs in one kernel
GEMM = "gemm"  # TVM's default GEMM (no micro-kernel for the target)
SOFTMAX = "softmax"
GELU = "gelu"
LAYERNORM = "layernorm"
REQUANTIZE = "requantize"
RESIDUAL = "residual"  # residual adds and token additions
SCORES = "scores"  # Swin's score bias, mask and requantization
DATA = "data"  # data movement: heads, windows, im2col, token sums

KINDS = (
    PACKED_GEMM,
    LOW_RANK_GEMM,
    GEMM,
    SOFTMAX,
    GELU,
    LAYERNORM,
    REQUANTIZE,
    RESIDUAL,
    SCORES,
    DATA,
)
#: Kernels that get the row schedule (one parallel region per row, vectorized stages).
ROW_KINDS = (SOFTMAX, GELU, LAYERNORM, REQUANTIZE)


def kernel_kind(func) -> str | None:
    """The kind of a PrimFunc intvit emitted (None for one it did not, e.g. TVM's FP32)."""
    attrs = getattr(func, "attrs", None)
    value = attrs.get(KERNEL_ATTR) if attrs is not None else None
    return None if value is None else str(value)

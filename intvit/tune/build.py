"""The build step of MetaSchedule candidates, run in its builder's worker processes.

TVM's default build function imports ``tvm.s_tir.tensor_intrin`` first, which parses every
CUDA tensor intrinsic and takes 90 s or more here: longer than the builder's 30 s timeout, so
every candidate failed ("LocalBuilder: Timeout"). The candidates intvit tunes never use TVM's
tensor intrinsics (tensorized kernels are intvit's own and are not tuned), so this is TVM's
default build without that import. Kept in a module of its own that imports only TVM: the
workers import it to unpickle the function.
"""

from __future__ import annotations


def build_candidate(mod, target, _params=None):
    """One candidate ``IRModule`` -> runtime module, as TVM's ``default_build`` does."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def alloc_random_arguments(session, device, args_info, alloc_repeat: int):
    """MetaSchedule's RPC runner's argument allocation, with random data made here and
    copied to the device where the device's runtime lacks TVM's random fill (the aarch64
    wheel's, and a board's minimal runtime: "Unable to find function
    tvm.contrib.random.random_fill_for_measure"): integers over their dtype's whole range,
    floats standard normal, as TVM's fill gives."""
    import numpy as np
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common

    try:
        remote_fill = session.get_function("tvm.contrib.random.random_fill_for_measure")
    except AttributeError:
        remote_fill = None
    if remote_fill is not None:
        return alloc_argument_common(remote_fill, device, args_info, alloc_repeat)
    rng = np.random.default_rng(0)

    def fill(tensor) -> None:
        dtype = np.dtype(str(tensor.dtype))
        shape = tuple(int(d) for d in tensor.shape)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        else:
            data = rng.standard_normal(shape).astype(dtype)
        tensor.copyfrom(data)

    return alloc_argument_common(fill, device, args_info, alloc_repeat)
